//! Browser sessions (tower-sessions) kept in our [`Store`], so a login that starts on one
//! replica can finish on another and survives a restart.

use crate::store::{SessionRecord, Store};
use async_trait::async_trait;
use shared::UnixTime;
use std::sync::Arc;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// Name of the session cookie.
pub const COOKIE: &str = "mcp_as_session";

/// Adapter from tower-sessions to our store.
#[derive(Clone)]
pub struct StoreSessions(pub Arc<dyn Store>);

impl std::fmt::Debug for StoreSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSessions")
    }
}

fn to_record(r: &Record) -> session_store::Result<SessionRecord> {
    let data = serde_json::to_string(r).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let expires_at = UnixTime(u64::try_from(r.expiry_date.unix_timestamp()).unwrap_or(0));
    Ok(SessionRecord { data, expires_at })
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for StoreSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            let rec = to_record(record)?;
            if self
                .0
                .create_session(&record.id.to_string(), &rec)
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            // Id collision (vanishingly rare): pick another.
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.0
            .save_session(&record.id.to_string(), &to_record(record)?)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(rec) = self
            .0
            .load_session(&id.to_string(), UnixTime::now())
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        serde_json::from_str(&rec.data)
            .map(Some)
            .map_err(|e| session_store::Error::Decode(e.to_string()))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.0
            .delete_session(&id.to_string())
            .await
            .map_err(backend)
    }
}
