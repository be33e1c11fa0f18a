//! Background sweeper: deletes expired codes, pending authorizations, states, sessions, refresh
//! families and revocation entries on a fixed interval.

use super::Store;
use crate::ops::Metrics;
use shared::UnixTime;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Spawns the sweeper; it runs until the runtime shuts down.
pub fn spawn(
    store: Arc<dyn Store>,
    every: Duration,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.sweep(UnixTime::now()).await {
                Ok(report) if report.removed > 0 => {
                    metrics
                        .swept_records
                        .fetch_add(report.removed, Ordering::Relaxed);
                    tracing::debug!(removed = report.removed, "swept expired records");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
    })
}
