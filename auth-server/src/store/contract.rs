//! The store contract: behaviour every backend must show. Each function takes a fresh store;
//! backends call them from their own `#[tokio::test]`s (see the bottom of this file for sled).

use super::*;
use std::sync::Arc;

const T0: UnixTime = UnixTime(1_000_000);

fn code_record(expires_at: UnixTime) -> CodeRecord {
    CodeRecord {
        client_id: "c1".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        code_challenge: "x".repeat(43),
        resource: "http://127.0.0.1:8001/mcp".into(),
        scope: "read".into(),
        sub: "user-alice".into(),
        username: Some("alice".into()),
        grant_id: "g1".into(),
        expires_at,
        redeemed_family: None,
    }
}

fn family(id: &str) -> FamilyRecord {
    FamilyRecord {
        family_id: id.into(),
        client_id: "c1".into(),
        sub: "user-alice".into(),
        username: Some("alice".into()),
        grant_id: "g1".into(),
        resource: "http://127.0.0.1:8001/mcp".into(),
        scope: "read write".into(),
        created_at: T0,
        revoked_at: None,
        expires_at: UnixTime(T0.0 + 1000),
    }
}

fn refresh(family_id: &str) -> RefreshRecord {
    RefreshRecord {
        family_id: family_id.into(),
        client_id: "c1".into(),
        scope: "read write".into(),
        expires_at: UnixTime(T0.0 + 1000),
        rotated: None,
    }
}

fn rotated_to(successor: &TokenHash, at: UnixTime) -> RotatedTo {
    RotatedTo {
        at,
        successor_hash: successor.clone(),
        successor_scope: "read write".into(),
    }
}

pub async fn code_redeems_once(store: Arc<dyn Store>) {
    let h = TokenHash::of("code-1");
    store
        .insert_code(&h, &code_record(UnixTime(T0.0 + 60)))
        .await
        .unwrap();
    let first = store.redeem_code(&h, "f1", T0).await.unwrap();
    assert!(
        matches!(first, CodeRedemption::Fresh(ref r) if r.redeemed_family.as_deref() == Some("f1"))
    );
    let second = store.redeem_code(&h, "f2", T0).await.unwrap();
    assert_eq!(
        second,
        CodeRedemption::AlreadyRedeemed {
            family_id: "f1".into()
        }
    );
    assert_eq!(
        store
            .redeem_code(&TokenHash::of("nope"), "f3", T0)
            .await
            .unwrap(),
        CodeRedemption::Unknown
    );
}

pub async fn expired_code_is_unknown(store: Arc<dyn Store>) {
    let h = TokenHash::of("code-2");
    store.insert_code(&h, &code_record(T0)).await.unwrap();
    assert_eq!(
        store.redeem_code(&h, "f1", T0).await.unwrap(),
        CodeRedemption::Unknown
    );
}

pub async fn concurrent_redemptions_have_one_winner(store: Arc<dyn Store>) {
    let h = TokenHash::of("code-3");
    store
        .insert_code(&h, &code_record(UnixTime(T0.0 + 60)))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let h = h.clone();
            tokio::spawn(async move { store.redeem_code(&h, &format!("f{i}"), T0).await.unwrap() })
        })
        .collect();
    let results = futures::future::join_all(tasks).await;
    let fresh = results
        .iter()
        .filter(|r| matches!(r, Ok(CodeRedemption::Fresh(_))))
        .count();
    assert_eq!(fresh, 1);
}

pub async fn pending_and_state_are_single_use(store: Arc<dyn Store>) {
    let id = TokenHash::of("req");
    let rec = PendingRecord {
        client_id: "c1".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        state: Some("s".into()),
        code_challenge: "x".repeat(43),
        resource: "r".into(),
        scope: "read".into(),
        browser_binding: "b".into(),
        expires_at: UnixTime(T0.0 + 60),
    };
    store.insert_pending(&id, &rec).await.unwrap();
    assert_eq!(store.get_pending(&id, T0).await.unwrap(), Some(rec.clone()));
    assert_eq!(
        store.get_pending(&id, UnixTime(T0.0 + 61)).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_pending(&id, T0).await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(store.take_pending(&id, T0).await.unwrap(), None);

    let st = TokenHash::of("state");
    let up = UpstreamStateRecord {
        pending: rec,
        upstream_verifier_enc: "v".into(),
        nonce: "n".into(),
        expires_at: UnixTime(T0.0 + 60),
    };
    store.insert_upstream_state(&st, &up).await.unwrap();
    assert!(
        store
            .take_upstream_state(&st, UnixTime(T0.0 + 60))
            .await
            .unwrap()
            .is_none()
    );
    store.insert_upstream_state(&st, &up).await.unwrap();
    assert_eq!(store.take_upstream_state(&st, T0).await.unwrap(), Some(up));
    assert_eq!(store.take_upstream_state(&st, T0).await.unwrap(), None);
}

pub async fn refresh_rotation_grace_and_reuse(store: Arc<dyn Store>) {
    let (r0, r1, r2) = (
        TokenHash::of("r0"),
        TokenHash::of("r1"),
        TokenHash::of("r2"),
    );
    store
        .insert_family(&family("fam"), Some((&r0, &refresh("fam"))))
        .await
        .unwrap();
    let out = store
        .rotate_refresh(&r0, &r1, &refresh("fam"), &rotated_to(&r1, T0), 30, T0)
        .await
        .unwrap();
    assert!(matches!(out, Rotation::Rotated { .. }));
    // A retry of r0 within the grace window gets r1 back.
    let later = UnixTime(T0.0 + 10);
    let out = store
        .rotate_refresh(
            &r0,
            &r2,
            &refresh("fam"),
            &rotated_to(&r2, later),
            30,
            later,
        )
        .await
        .unwrap();
    assert!(matches!(out, Rotation::Grace { ref rotated, .. } if rotated.successor_hash == r1));
    // After the window, reuse of r0 is reported for family revocation.
    let late = UnixTime(T0.0 + 31);
    let out = store
        .rotate_refresh(&r0, &r2, &refresh("fam"), &rotated_to(&r2, late), 30, late)
        .await
        .unwrap();
    assert_eq!(
        out,
        Rotation::Reused {
            family_id: "fam".into()
        }
    );
    store.revoke_family("fam", late).await.unwrap();
    assert!(
        store
            .get_family("fam")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    // A revoked family refuses even its newest token.
    let out = store
        .rotate_refresh(&r1, &r2, &refresh("fam"), &rotated_to(&r2, late), 30, late)
        .await
        .unwrap();
    assert_eq!(
        out,
        Rotation::Reused {
            family_id: "fam".into()
        }
    );
}

pub async fn grace_ends_once_the_successor_rotated(store: Arc<dyn Store>) {
    let (r0, r1, r2, r3) = (
        TokenHash::of("a0"),
        TokenHash::of("a1"),
        TokenHash::of("a2"),
        TokenHash::of("a3"),
    );
    store
        .insert_family(&family("fam2"), Some((&r0, &refresh("fam2"))))
        .await
        .unwrap();
    store
        .rotate_refresh(&r0, &r1, &refresh("fam2"), &rotated_to(&r1, T0), 30, T0)
        .await
        .unwrap();
    store
        .rotate_refresh(&r1, &r2, &refresh("fam2"), &rotated_to(&r2, T0), 30, T0)
        .await
        .unwrap();
    let out = store
        .rotate_refresh(&r0, &r3, &refresh("fam2"), &rotated_to(&r3, T0), 30, T0)
        .await
        .unwrap();
    assert_eq!(
        out,
        Rotation::Reused {
            family_id: "fam2".into()
        }
    );
}

pub async fn concurrent_rotations_have_one_winner(store: Arc<dyn Store>) {
    let r0 = TokenHash::of("c0");
    store
        .insert_family(&family("fam3"), Some((&r0, &refresh("fam3"))))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let r0 = r0.clone();
            tokio::spawn(async move {
                let new = TokenHash::of(&format!("c-new-{i}"));
                store
                    .rotate_refresh(&r0, &new, &refresh("fam3"), &rotated_to(&new, T0), 30, T0)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let results = futures::future::join_all(tasks).await;
    let rotated = results
        .iter()
        .filter(|r| matches!(r, Ok(Rotation::Rotated { .. })))
        .count();
    let grace = results
        .iter()
        .filter(|r| matches!(r, Ok(Rotation::Grace { .. })))
        .count();
    assert_eq!(rotated, 1);
    assert_eq!(grace, 15);
}

pub async fn grants_update_by_version_and_lease(store: Arc<dyn Store>) {
    let mut g = GrantRecord {
        grant_id: "g1".into(),
        sub: "user-alice".into(),
        tokens_enc: "t0".into(),
        access_expires_at: Some(T0),
        status: GrantStatus::Active,
        version: 0,
        refreshed: false,
        updated_at: T0,
        expires_at: UnixTime(T0.0 + 1000),
    };
    store.insert_grant(&g).await.unwrap();
    g.version = 1;
    g.tokens_enc = "t1".into();
    assert!(store.update_grant(&g, 0).await.unwrap());
    assert!(
        !store.update_grant(&g, 0).await.unwrap(),
        "stale version must lose"
    );
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().tokens_enc,
        "t1"
    );

    let until = UnixTime(T0.0 + 10);
    assert!(store.try_lease_grant("g1", "a", until, T0).await.unwrap());
    assert!(!store.try_lease_grant("g1", "b", until, T0).await.unwrap());
    assert!(
        store
            .try_lease_grant("g1", "b", until, until)
            .await
            .unwrap(),
        "expired lease is free"
    );
    store.release_grant_lease("g1", "b").await.unwrap();
    assert!(store.try_lease_grant("g1", "a", until, T0).await.unwrap());
}

pub async fn revocations_and_sessions(store: Arc<dyn Store>) {
    assert!(!store.is_access_revoked("j1").await.unwrap());
    store.revoke_access("j1", UnixTime(T0.0 + 5)).await.unwrap();
    assert!(store.is_access_revoked("j1").await.unwrap());

    let s = SessionRecord {
        data: "{}".into(),
        expires_at: UnixTime(T0.0 + 5),
    };
    assert!(store.create_session("s1", &s).await.unwrap());
    assert!(
        !store.create_session("s1", &s).await.unwrap(),
        "create never overwrites"
    );
    assert_eq!(store.load_session("s1", T0).await.unwrap(), Some(s.clone()));
    store.delete_session("s1").await.unwrap();
    assert_eq!(store.load_session("s1", T0).await.unwrap(), None);
}

fn client(id: &str, first_used_at: Option<UnixTime>) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        secret_hash: None,
        client_name: None,
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        grant_types: vec!["authorization_code".into()],
        response_types: vec!["code".into()],
        token_endpoint_auth_method: "none".into(),
        scope: "read".into(),
        client_uri: None,
        logo_uri: None,
        software_id: None,
        software_version: None,
        fingerprint: format!("fp-{id}"),
        created_at: T0,
        first_used_at,
        unused_expires_at: T0,
    }
}

pub async fn clients_never_used_expire_used_ones_stay(store: Arc<dyn Store>) {
    store.put_client(&client("unused", None)).await.unwrap();
    store.put_client(&client("used", None)).await.unwrap();
    assert_eq!(
        store
            .find_unused_client("fp-used")
            .await
            .unwrap()
            .unwrap()
            .client_id,
        "used"
    );
    store.mark_client_used("used", T0).await.unwrap();
    assert_eq!(store.find_unused_client("fp-used").await.unwrap(), None);
    store.sweep(UnixTime(T0.0 + 1)).await.unwrap();
    assert_eq!(store.get_client("unused").await.unwrap(), None);
    assert!(store.get_client("used").await.unwrap().is_some());
}

pub async fn sweep_removes_only_expired(store: Arc<dyn Store>) {
    store
        .insert_code(&TokenHash::of("old"), &code_record(T0))
        .await
        .unwrap();
    store
        .insert_code(&TokenHash::of("live"), &code_record(UnixTime(T0.0 + 100)))
        .await
        .unwrap();
    store.revoke_access("j-old", T0).await.unwrap();
    let report = store.sweep(UnixTime(T0.0 + 1)).await.unwrap();
    assert_eq!(report.removed, 2);
    assert_eq!(
        store
            .redeem_code(&TokenHash::of("old"), "f", T0)
            .await
            .unwrap(),
        CodeRedemption::Unknown
    );
    assert!(matches!(
        store
            .redeem_code(&TokenHash::of("live"), "f", UnixTime(T0.0 + 1))
            .await
            .unwrap(),
        CodeRedemption::Fresh(_)
    ));
}

pub async fn a_family_revoked_before_it_exists_is_created_revoked(store: Arc<dyn Store>) {
    // A code replayed while its first redemption is still under way revokes a family that
    // is not stored yet; the redemption's insert must then store it revoked.
    store.revoke_family("f-early", T0).await.unwrap();
    let hash = TokenHash::of("r-early");
    store
        .insert_family(&family("f-early"), Some((&hash, &refresh("f-early"))))
        .await
        .unwrap();
    let f = store.get_family("f-early").await.unwrap().unwrap();
    assert_eq!(f.revoked_at, Some(T0));
    let r = store
        .rotate_refresh(
            &hash,
            &TokenHash::of("r-next"),
            &refresh("f-early"),
            &rotated_to(&TokenHash::of("r-next"), T0),
            30,
            T0,
        )
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Reused { .. }), "{r:?}");
    // Other families are untouched, and the memory of the early revocation is swept in time.
    store.insert_family(&family("f-other"), None).await.unwrap();
    let other = store.get_family("f-other").await.unwrap().unwrap();
    assert_eq!(other.revoked_at, None);
    store.revoke_family("f-never", T0).await.unwrap();
    let report = store.sweep(UnixTime(T0.0 + 7200)).await.unwrap();
    assert!(report.removed >= 1);
    store.insert_family(&family("f-never"), None).await.unwrap();
    let late = store.get_family("f-never").await.unwrap().unwrap();
    assert_eq!(late.revoked_at, None, "a swept tombstone no longer applies");
}

pub async fn first_key_once_and_rotation(store: Arc<dyn Store>) {
    let key = |kid: &str, at: u64| KeyRecord {
        kid: kid.into(),
        alg: "EdDSA".into(),
        private_enc: "p".into(),
        public_x: "x".into(),
        public_y: None,
        created_at: UnixTime(at),
        retired_at: None,
        expires_at: None,
    };
    assert!(store.insert_first_key(&key("k1", 1)).await.unwrap());
    assert!(!store.insert_first_key(&key("k2", 2)).await.unwrap());
    let mut old = key("k1", 1);
    old.retired_at = Some(UnixTime(3));
    store.rotate_keys(&key("k3", 3), &[old]).await.unwrap();
    let keys = store.list_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["k1", "k3"]
    );
    assert!(keys[0].retired_at.is_some());
}

/// Runs every contract function against a backend built by `make`: one `#[tokio::test]` per
/// function, of the same name (the concurrency ones on a multi-threaded runtime).
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@tests tokio::test, $make;
            code_redeems_once,
            expired_code_is_unknown,
            pending_and_state_are_single_use,
            refresh_rotation_grace_and_reuse,
            grace_ends_once_the_successor_rotated,
            grants_update_by_version_and_lease,
            revocations_and_sessions,
            clients_never_used_expire_used_ones_stay,
            sweep_removes_only_expired,
            a_family_revoked_before_it_exists_is_created_revoked,
            first_key_once_and_rotation,
        );
        $crate::store_contract_tests!(@tests tokio::test(flavor = "multi_thread", worker_threads = 4), $make;
            concurrent_redemptions_have_one_winner,
            concurrent_rotations_have_one_winner,
        );
    };
    (@tests $attr:meta, $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $name() {
                $crate::store::contract::$name($make).await
            }
        )*
    };
}

mod sled_backend {
    fn make() -> std::sync::Arc<dyn crate::store::Store> {
        std::sync::Arc::new(crate::store::sled::SledStore::temporary().unwrap())
    }
    crate::store_contract_tests!(make());
}
