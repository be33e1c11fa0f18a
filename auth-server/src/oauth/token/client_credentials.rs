//! `grant_type=client_credentials` (RFC 6749 §4.4) for machine clients: a confidential client
//! gets an access token for itself (`sub` = its client id), without a refresh token and without
//! access to any user's TaskManager data.

use super::check_same_resource;
use crate::extract::Params;
use crate::state::AppState;
use crate::store::ClientRecord;
use crate::tokens::access;
use shared::token::TokenResponse;
use shared::{OAuthError, Scope, UnixTime};

pub async fn issue(
    app: &AppState,
    client: &ClientRecord,
    params: &Params,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    if client.secret_hash.is_none() {
        return Err(OAuthError::unauthorized_client(
            "client_credentials needs a confidential client",
        ));
    }
    let allowed = Scope::parse(&client.scope)
        .unwrap_or_default()
        .intersect(&app.settings.mcp_scopes);
    let scope = crate::oauth::check_scope(params.get("scope"), &allowed)?;
    check_same_resource(params, &app.settings.resource)?;
    let resource = &app.settings.resource;
    let (access_token, expires_in) = access::mint(
        app,
        None,
        &client.client_id,
        &client.client_id,
        resource,
        &scope,
        now,
    )
    .await?;
    app.store.mark_client_used(&client.client_id, now).await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: Some(expires_in),
        refresh_token: None,
        scope: Some(scope.to_string()),
        id_token: None,
        issued_token_type: None,
        upstream_grant_state: None,
    })
}
