//! Shared application state handed to every handler.

use crate::config::Settings;
use crate::oauth::client_metadata::MetadataCache;
use crate::ops::Metrics;
use crate::store::Store;
use crate::tokens::keys::KeyRing;
use crate::upstream::client::UpstreamClient;
use crate::upstream::vault::Vault;
use shared::time::Clock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub vault: Vault,
    pub upstream: UpstreamClient,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub registration_limiter: Arc<RateLimiter>,
    /// Client ID metadata documents fetched recently (per replica).
    pub client_metadata: Arc<MetadataCache>,
}

/// A fixed-window rate limiter per client IP (registration abuse protection). Not flow state:
/// per-replica counting is acceptable.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `ip` at `now_secs`; `false` if over the limit.
    pub fn allow(&self, ip: IpAddr, now_secs: u64) -> bool {
        let window = now_secs / 60;
        let Ok(mut map) = self.windows.lock() else {
            return true;
        };
        if map.len() > 10_000 {
            map.retain(|_, (w, _)| *w == window);
        }
        let entry = map.entry(ip).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_per_window() {
        let l = RateLimiter::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(l.allow(ip, 0));
        assert!(l.allow(ip, 1));
        assert!(!l.allow(ip, 2));
        assert!(l.allow(ip, 60));
    }
}
