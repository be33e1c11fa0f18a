//! The user's upstream grant: TaskManager's tokens, refreshed before they expire.
//!
//! One refresh per grant runs at a time, across replicas: the refresher holds a lease in the
//! store, others wait for its result. When TaskManager refuses a refresh, the grant is marked
//! as needing re-authorization, and every later MCP refresh or token exchange fails with
//! `invalid_grant` so the client starts a new login. TaskManager being unreachable is a
//! temporary failure and changes nothing.

use crate::error::Error;
use crate::ops::Metrics;
use crate::state::AppState;
use crate::store::{GrantRecord, GrantStatus};
use crate::upstream::client::UpstreamError;
use crate::upstream::vault::UpstreamTokens;
use shared::UnixTime;
use shared::secret::random_token;
use std::time::Duration;

/// Why fresh upstream tokens could not be had.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("upstream grant needs re-authorization")]
    NeedsReauthorization,
    #[error("upstream grant is unknown")]
    Unknown,
    #[error("TaskManager is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

/// Whether the tokens were already fresh or had to be refreshed just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    Refreshed,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Refreshed => "refreshed",
        }
    }
}

/// How long a refresh lease lasts (longer than one upstream call with its timeout).
fn lease_for(app: &AppState) -> Duration {
    app.settings.upstream.timeout + Duration::from_secs(5)
}

fn needs_refresh(tokens: &UpstreamTokens, margin: Duration, now: UnixTime) -> bool {
    tokens.expires_at.is_some_and(|exp| exp <= now.plus(margin))
}

fn expired(tokens: &UpstreamTokens, now: UnixTime) -> bool {
    tokens.expires_at.is_some_and(|exp| exp <= now)
}

/// TaskManager's tokens for `grant_id`, refreshed first if they expire within the margin.
pub async fn fresh_tokens(
    app: &AppState,
    grant_id: &str,
) -> Result<(UpstreamTokens, Freshness), GrantError> {
    let margin = app.settings.upstream_refresh_margin;
    let holder = random_token(12);
    let deadline = tokio::time::Instant::now() + lease_for(app) + Duration::from_secs(2);
    // The version we found due for refresh while another holder had the lease. Once that
    // holder has stored its result, the result is ours too: when TaskManager's tokens live
    // shorter than the margin, even just-refreshed tokens are "due", and refreshing again
    // would cost one upstream refresh per waiting caller instead of one per grant.
    let mut waited_on: Option<u64> = None;
    loop {
        let now = app.clock.now();
        let grant = app
            .store
            .get_grant(grant_id)
            .await
            .map_err(Error::from)?
            .ok_or(GrantError::Unknown)?;
        if grant.status == GrantStatus::NeedsReauthorization {
            return Err(GrantError::NeedsReauthorization);
        }
        let tokens = app
            .vault
            .open_tokens(&grant.tokens_enc)
            .map_err(Error::from)?;
        if waited_on.is_some_and(|v| v != grant.version) && !expired(&tokens, now) {
            return Ok((tokens, Freshness::Refreshed));
        }
        if !needs_refresh(&tokens, margin, now) {
            let freshness = if waited_on.is_some() || grant.refreshed {
                Freshness::Refreshed
            } else {
                Freshness::Fresh
            };
            return Ok((tokens, freshness));
        }
        let until = now.plus(lease_for(app));
        if app
            .store
            .try_lease_grant(grant_id, &holder, until, now)
            .await
            .map_err(Error::from)?
        {
            let result = refresh_under_lease(app, grant, tokens, now).await;
            if let Err(e) = app.store.release_grant_lease(grant_id, &holder).await {
                tracing::warn!(error = %e, "could not release grant lease; it will expire");
            }
            return result;
        }
        // Another task or replica is refreshing: wait for its result, bounded.
        if tokio::time::Instant::now() >= deadline {
            return Err(GrantError::Unavailable(
                "timed out waiting for a concurrent refresh".into(),
            ));
        }
        waited_on.get_or_insert(grant.version);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refresh_under_lease(
    app: &AppState,
    grant: GrantRecord,
    tokens: UpstreamTokens,
    now: UnixTime,
) -> Result<(UpstreamTokens, Freshness), GrantError> {
    // Re-read under the lease: a refresher that finished since we looked has just fetched
    // the freshest tokens TaskManager gives; use them rather than refresh once more.
    let current = app
        .store
        .get_grant(&grant.grant_id)
        .await
        .map_err(Error::from)?
        .ok_or(GrantError::Unknown)?;
    if current.version != grant.version {
        let tokens = app
            .vault
            .open_tokens(&current.tokens_enc)
            .map_err(Error::from)?;
        if current.status == GrantStatus::NeedsReauthorization {
            return Err(GrantError::NeedsReauthorization);
        }
        if !expired(&tokens, now) {
            return Ok((tokens, Freshness::Refreshed));
        }
    }
    let Some(refresh_token) = tokens.refresh_token.clone() else {
        mark_needs_reauthorization(app, &current, now).await?;
        return Err(GrantError::NeedsReauthorization);
    };
    Metrics::inc(&app.metrics.upstream_refreshes);
    match app.upstream.refresh(&refresh_token, now).await {
        Ok(new_tokens) => {
            let updated = GrantRecord {
                tokens_enc: app.vault.seal_tokens(&new_tokens),
                access_expires_at: new_tokens.expires_at,
                version: current.version + 1,
                refreshed: true,
                updated_at: now,
                ..current.clone()
            };
            if !app
                .store
                .update_grant(&updated, current.version)
                .await
                .map_err(Error::from)?
            {
                tracing::warn!(target: "upstream", "grant changed during refresh; keeping the stored version");
            }
            tracing::info!(target: "upstream", grant_id = %current.grant_id, "upstream tokens refreshed");
            Ok((new_tokens, Freshness::Refreshed))
        }
        Err(UpstreamError::Refused(reason)) => {
            tracing::warn!(target: "security", grant_id = %current.grant_id, %reason, "TaskManager refused refresh; grant needs re-authorization");
            mark_needs_reauthorization(app, &current, now).await?;
            Err(GrantError::NeedsReauthorization)
        }
        Err(UpstreamError::Unavailable(d)) | Err(UpstreamError::Protocol(d)) => {
            Metrics::inc(&app.metrics.upstream_failures);
            Err(GrantError::Unavailable(d))
        }
    }
}

async fn mark_needs_reauthorization(
    app: &AppState,
    grant: &GrantRecord,
    now: UnixTime,
) -> Result<(), GrantError> {
    let updated = GrantRecord {
        status: GrantStatus::NeedsReauthorization,
        version: grant.version + 1,
        updated_at: now,
        ..grant.clone()
    };
    app.store
        .update_grant(&updated, grant.version)
        .await
        .map_err(Error::from)?;
    Ok(())
}
