//! The embedded default backend: one sled database in `--data-dir`, one tree per record kind,
//! JSON values. Single-key transitions use compare-and-swap; multi-key ones use sled
//! transactions. Writes a client relies on are flushed before the method returns.

use super::*;
use ::sled::transaction::{ConflictableTransactionError, TransactionalTree};
use ::sled::{Db, Transactional, Tree};
use serde::de::DeserializeOwned;
use std::path::Path;

/// sled-backed [`Store`].
#[derive(Clone)]
pub struct SledStore {
    db: Db,
    clients: Tree,
    pending: Tree,
    upstream_states: Tree,
    codes: Tree,
    families: Tree,
    refresh: Tree,
    revoked: Tree,
    grants: Tree,
    leases: Tree,
    keys: Tree,
    sessions: Tree,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SledStore")
    }
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(v)?)
}

fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Marks that the first signing key was created (two replicas starting at once make one).
const KEYS_MARKER: &[u8] = b"__initialised";

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn tx_get<T: DeserializeOwned>(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<T>> {
    match tree.get(key)? {
        Some(bytes) => dec(&bytes)
            .map(Some)
            .map_err(ConflictableTransactionError::Abort),
        None => Ok(None),
    }
}

fn tx_put<T: Serialize>(tree: &TransactionalTree, key: &[u8], v: &T) -> TxResult<()> {
    let bytes = enc(v).map_err(ConflictableTransactionError::Abort)?;
    tree.insert(key, bytes)?;
    Ok(())
}

/// How long the revocation of a family that does not exist yet is remembered (far longer than
/// a code redemption takes).
const TOMBSTONE_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// A family revoked before it was created, kept in the `revoked` tree under
/// [`family_tombstone`] (access-token entries there are bare expiry numbers).
#[derive(Serialize, Deserialize)]
struct Tombstone {
    revoked_at: u64,
    expires_at: u64,
}

fn family_tombstone(family_id: &str) -> Vec<u8> {
    format!("family:{family_id}").into_bytes()
}

/// Reads the `expires_at` a record carries, for the sweeper (clients: only while unused).
fn expiry_of(tree_name: &str, bytes: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    match tree_name {
        "clients" => {
            if v.get("first_used_at").is_some_and(|u| !u.is_null()) {
                None
            } else {
                v.get("unused_expires_at")?.as_u64()
            }
        }
        "revoked" => v.as_u64().or_else(|| v.get("expires_at")?.as_u64()),
        _ => v.get("expires_at")?.as_u64(),
    }
}

impl SledStore {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = ::sled::Config::new().path(dir.join("store.sled")).open()?;
        Self::from_db(db)
    }

    /// A throwaway database (tests).
    pub fn temporary() -> Result<Self, StoreError> {
        Self::from_db(::sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: Db) -> Result<Self, StoreError> {
        Ok(Self {
            clients: db.open_tree("clients")?,
            pending: db.open_tree("pending")?,
            upstream_states: db.open_tree("upstream_states")?,
            codes: db.open_tree("codes")?,
            families: db.open_tree("families")?,
            refresh: db.open_tree("refresh")?,
            revoked: db.open_tree("revoked")?,
            grants: db.open_tree("grants")?,
            leases: db.open_tree("leases")?,
            keys: db.open_tree("keys")?,
            sessions: db.open_tree("sessions")?,
            db,
        })
    }

    /// Makes every write so far durable. A blocking `flush` on the blocking pool, not
    /// `flush_async`: concurrent `flush_async` calls can deadlock in sled 0.34 (sled issues
    /// #1241, #1308), which showed up here as hung concurrent code redemptions.
    async fn durable(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Backend(format!("flush task: {e}")))??;
        Ok(())
    }

    fn get<T: DeserializeOwned>(tree: &Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
        tree.get(key)?.map(|b| dec(&b)).transpose()
    }

    fn put<T: Serialize>(tree: &Tree, key: &[u8], v: &T) -> Result<(), StoreError> {
        tree.insert(key, enc(v)?)?;
        Ok(())
    }

    /// Removes and returns the record at `key` in one atomic step.
    fn take<T: DeserializeOwned>(tree: &Tree, key: &[u8]) -> Result<Option<T>, StoreError> {
        tree.remove(key)?.map(|b| dec(&b)).transpose()
    }

    fn named_trees(&self) -> [(&'static str, &Tree); 10] {
        [
            ("clients", &self.clients),
            ("pending", &self.pending),
            ("upstream_states", &self.upstream_states),
            ("codes", &self.codes),
            ("families", &self.families),
            ("refresh", &self.refresh),
            ("revoked", &self.revoked),
            ("grants", &self.grants),
            ("leases", &self.leases),
            ("sessions", &self.sessions),
        ]
    }
}

#[async_trait]
impl Store for SledStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.keys.len();
        self.db.was_recovered();
        Ok(())
    }

    async fn put_client(&self, client: &ClientRecord) -> Result<(), StoreError> {
        Self::put(&self.clients, client.client_id.as_bytes(), client)?;
        self.durable().await
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        Self::get(&self.clients, client_id.as_bytes())
    }

    async fn find_unused_client(
        &self,
        fingerprint: &str,
    ) -> Result<Option<ClientRecord>, StoreError> {
        for item in self.clients.iter() {
            let (_, bytes) = item?;
            let client: ClientRecord = dec(&bytes)?;
            if client.fingerprint == fingerprint && client.first_used_at.is_none() {
                return Ok(Some(client));
            }
        }
        Ok(None)
    }

    async fn mark_client_used(&self, client_id: &str, now: UnixTime) -> Result<(), StoreError> {
        let mut changed = false;
        self.clients.fetch_and_update(client_id.as_bytes(), |old| {
            let bytes = old?;
            match serde_json::from_slice::<ClientRecord>(bytes) {
                Ok(mut c) if c.first_used_at.is_none() => {
                    c.first_used_at = Some(now);
                    changed = true;
                    serde_json::to_vec(&c).ok().or_else(|| Some(bytes.to_vec()))
                }
                _ => Some(bytes.to_vec()),
            }
        })?;
        if changed {
            self.durable().await?;
        }
        Ok(())
    }

    async fn insert_pending(&self, id: &TokenHash, rec: &PendingRecord) -> Result<(), StoreError> {
        Self::put(&self.pending, id.as_str().as_bytes(), rec)
    }

    async fn get_pending(
        &self,
        id: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PendingRecord>, StoreError> {
        let rec: Option<PendingRecord> = Self::get(&self.pending, id.as_str().as_bytes())?;
        Ok(rec.filter(|r| r.expires_at > now))
    }

    async fn take_pending(
        &self,
        id: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PendingRecord>, StoreError> {
        let rec: Option<PendingRecord> = Self::take(&self.pending, id.as_str().as_bytes())?;
        Ok(rec.filter(|r| r.expires_at > now))
    }

    async fn insert_upstream_state(
        &self,
        state: &TokenHash,
        rec: &UpstreamStateRecord,
    ) -> Result<(), StoreError> {
        Self::put(&self.upstream_states, state.as_str().as_bytes(), rec)?;
        self.durable().await
    }

    async fn take_upstream_state(
        &self,
        state: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<UpstreamStateRecord>, StoreError> {
        let rec: Option<UpstreamStateRecord> =
            Self::take(&self.upstream_states, state.as_str().as_bytes())?;
        Ok(rec.filter(|r| r.expires_at > now))
    }

    async fn insert_code(&self, code: &TokenHash, rec: &CodeRecord) -> Result<(), StoreError> {
        Self::put(&self.codes, code.as_str().as_bytes(), rec)?;
        self.durable().await
    }

    async fn redeem_code(
        &self,
        code: &TokenHash,
        family_id: &str,
        now: UnixTime,
    ) -> Result<CodeRedemption, StoreError> {
        let key = code.as_str().as_bytes();
        loop {
            let Some(old_bytes) = self.codes.get(key)? else {
                return Ok(CodeRedemption::Unknown);
            };
            let mut rec: CodeRecord = dec(&old_bytes)?;
            if let Some(family_id) = rec.redeemed_family {
                return Ok(CodeRedemption::AlreadyRedeemed { family_id });
            }
            if rec.expires_at <= now {
                return Ok(CodeRedemption::Unknown);
            }
            rec.redeemed_family = Some(family_id.to_owned());
            let swapped = self
                .codes
                .compare_and_swap(key, Some(&old_bytes), Some(enc(&rec)?))?;
            if swapped.is_ok() {
                self.durable().await?;
                return Ok(CodeRedemption::Fresh(rec));
            }
            // Another redemption changed it first: look again.
        }
    }

    async fn insert_family(
        &self,
        family: &FamilyRecord,
        refresh: Option<(&TokenHash, &RefreshRecord)>,
    ) -> Result<(), StoreError> {
        let tombstone = family_tombstone(&family.family_id);
        (&self.families, &self.refresh, &self.revoked).transaction(
            |(families, refreshes, revoked)| {
                let mut family = family.clone();
                if let Some(bytes) = revoked.get(&tombstone)? {
                    // Revoked before it existed: its code was replayed meanwhile.
                    let at: u64 = dec::<Tombstone>(&bytes)
                        .map_err(ConflictableTransactionError::Abort)?
                        .revoked_at;
                    family.revoked_at.get_or_insert(UnixTime(at));
                }
                tx_put(families, family.family_id.as_bytes(), &family)?;
                if let Some((hash, rec)) = refresh {
                    tx_put(refreshes, hash.as_str().as_bytes(), rec)?;
                }
                Ok(())
            },
        )?;
        self.durable().await
    }

    async fn get_family(&self, family_id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        Self::get(&self.families, family_id.as_bytes())
    }

    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        new_rec: &RefreshRecord,
        rotated: &RotatedTo,
        grace_secs: u64,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        let outcome = (&self.refresh, &self.families).transaction(|(refreshes, families)| {
            let Some(mut old_rec) = tx_get::<RefreshRecord>(refreshes, old.as_str().as_bytes())?
            else {
                return Ok(Rotation::Unknown);
            };
            if old_rec.expires_at <= now {
                return Ok(Rotation::Unknown);
            }
            let family_id = old_rec.family_id.clone();
            let Some(family) = tx_get::<FamilyRecord>(families, family_id.as_bytes())? else {
                return Ok(Rotation::Unknown);
            };
            if family.revoked_at.is_some() {
                return Ok(Rotation::Reused { family_id });
            }
            if let Some(prev) = old_rec.rotated.clone() {
                let successor: Option<RefreshRecord> =
                    tx_get(refreshes, prev.successor_hash.as_str().as_bytes())?;
                let successor_unrotated = successor.is_some_and(|s| s.rotated.is_none());
                if now.0 < prev.at.0.saturating_add(grace_secs) && successor_unrotated {
                    return Ok(Rotation::Grace {
                        old: old_rec,
                        family,
                        rotated: prev,
                    });
                }
                return Ok(Rotation::Reused { family_id });
            }
            old_rec.rotated = Some(rotated.clone());
            tx_put(refreshes, old.as_str().as_bytes(), &old_rec)?;
            tx_put(refreshes, new.as_str().as_bytes(), new_rec)?;
            Ok(Rotation::Rotated {
                old: old_rec,
                family,
            })
        })?;
        if matches!(outcome, Rotation::Rotated { .. }) {
            self.durable().await?;
        }
        Ok(outcome)
    }

    async fn get_refresh(
        &self,
        token: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let rec: Option<RefreshRecord> = Self::get(&self.refresh, token.as_str().as_bytes())?;
        Ok(rec.filter(|r| r.expires_at > now))
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<(), StoreError> {
        (&self.families, &self.revoked).transaction(|(families, revoked)| {
            match tx_get::<FamilyRecord>(families, family_id.as_bytes())? {
                Some(mut f) => {
                    if f.revoked_at.is_none() {
                        f.revoked_at = Some(now);
                        tx_put(families, family_id.as_bytes(), &f)?;
                    }
                }
                None => {
                    let tombstone = Tombstone {
                        revoked_at: now.0,
                        expires_at: now.plus(TOMBSTONE_TTL).0,
                    };
                    tx_put(revoked, &family_tombstone(family_id), &tombstone)?;
                }
            }
            Ok(())
        })?;
        self.durable().await
    }

    async fn revoke_access(&self, jti: &str, exp: UnixTime) -> Result<(), StoreError> {
        Self::put(&self.revoked, jti.as_bytes(), &exp.0)?;
        self.durable().await
    }

    async fn is_access_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self.revoked.contains_key(jti.as_bytes())?)
    }

    async fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError> {
        Self::put(&self.grants, grant.grant_id.as_bytes(), grant)?;
        self.durable().await
    }

    async fn get_grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError> {
        Self::get(&self.grants, grant_id.as_bytes())
    }

    async fn update_grant(
        &self,
        grant: &GrantRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let key = grant.grant_id.as_bytes();
        let Some(old_bytes) = self.grants.get(key)? else {
            return Ok(false);
        };
        let old: GrantRecord = dec(&old_bytes)?;
        if old.version != expected_version {
            return Ok(false);
        }
        let swapped = self
            .grants
            .compare_and_swap(key, Some(&old_bytes), Some(enc(grant)?))?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.durable().await?;
        Ok(true)
    }

    async fn try_lease_grant(
        &self,
        grant_id: &str,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        #[derive(Serialize, Deserialize)]
        struct Lease {
            holder: String,
            expires_at: UnixTime,
        }
        let key = grant_id.as_bytes();
        let new = enc(&Lease {
            holder: holder.to_owned(),
            expires_at: until,
        })?;
        loop {
            let current = self.leases.get(key)?;
            if let Some(bytes) = &current {
                let lease: Lease = dec(bytes)?;
                if lease.expires_at > now && lease.holder != holder {
                    return Ok(false);
                }
            }
            if self
                .leases
                .compare_and_swap(key, current, Some(new.clone()))?
                .is_ok()
            {
                return Ok(true);
            }
        }
    }

    async fn release_grant_lease(&self, grant_id: &str, holder: &str) -> Result<(), StoreError> {
        let key = grant_id.as_bytes();
        if let Some(bytes) = self.leases.get(key)? {
            let v: serde_json::Value = serde_json::from_slice(&bytes)?;
            if v.get("holder").and_then(|h| h.as_str()) == Some(holder) {
                let _ = self
                    .leases
                    .compare_and_swap(key, Some(bytes), None::<Vec<u8>>)?;
            }
        }
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut keys = Vec::new();
        for item in self.keys.iter() {
            let (key, bytes) = item?;
            if key.as_ref() == KEYS_MARKER {
                continue;
            }
            keys.push(dec::<KeyRecord>(&bytes)?);
        }
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }

    async fn rotate_keys(&self, new: &KeyRecord, retired: &[KeyRecord]) -> Result<(), StoreError> {
        self.keys.transaction(|keys| {
            for k in retired {
                tx_put(keys, k.kid.as_bytes(), k)?;
            }
            tx_put(keys, new.kid.as_bytes(), new)?;
            Ok(())
        })?;
        self.durable().await
    }

    async fn insert_first_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        let inserted = self.keys.transaction(|keys| {
            if keys.get(KEYS_MARKER)?.is_some() {
                return Ok(false);
            }
            keys.insert(KEYS_MARKER, b"1".as_slice())?;
            tx_put(keys, key.kid.as_bytes(), key)?;
            Ok(true)
        });
        let inserted: bool = inserted.map_err(StoreError::from)?;
        self.durable().await?;
        Ok(inserted)
    }

    async fn load_session(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let rec: Option<SessionRecord> = Self::get(&self.sessions, id.as_bytes())?;
        Ok(rec.filter(|r| r.expires_at > now))
    }

    async fn save_session(&self, id: &str, rec: &SessionRecord) -> Result<(), StoreError> {
        Self::put(&self.sessions, id.as_bytes(), rec)
    }

    async fn create_session(&self, id: &str, rec: &SessionRecord) -> Result<bool, StoreError> {
        let swapped =
            self.sessions
                .compare_and_swap(id.as_bytes(), None::<&[u8]>, Some(enc(rec)?))?;
        Ok(swapped.is_ok())
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.sessions.remove(id.as_bytes())?;
        Ok(())
    }

    async fn sweep(&self, now: UnixTime) -> Result<SweepReport, StoreError> {
        let mut removed = 0;
        for (name, tree) in self.named_trees() {
            for item in tree.iter() {
                let (key, bytes) = item?;
                if expiry_of(name, &bytes).is_some_and(|exp| exp <= now.0) {
                    // Remove only if unchanged since we read it: a record updated meanwhile
                    // (a session touched, a client used) is live and stays.
                    if tree
                        .compare_and_swap(&key, Some(&bytes), None::<&[u8]>)?
                        .is_ok()
                    {
                        removed += 1;
                    }
                }
            }
        }
        Ok(SweepReport { removed })
    }
}

/// Rejects a path that cannot hold the database, with a message naming it.
pub fn check_data_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Backend(format!("cannot create data dir {}: {e}", dir.display())))
}
