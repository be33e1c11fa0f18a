//! `GET/POST /api/oauth/clients`: client registration by an administrator's browser session
//! (the `session` cookie), as TaskManager's admin UI does it. Secrets are shown once, at creation.

use super::error::ApiError;
use super::oauth::{self, supported_scope};
use super::state::{ClientRecord, MockState};
use super::users::current_session;
use super::util::rfc3339;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use shared::secret::{opaque_token, random_token};
use shared::{Scope, Secret, UnixTime};

/// Grant types a client may register.
const GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];

/// What a client gets when it names no grant types.
pub fn default_grant_types() -> Vec<String> {
    GRANT_TYPES.iter().map(|g| (*g).to_owned()).collect()
}

/// A client as listed (never with its secret).
#[derive(Debug, Serialize)]
struct ClientView {
    client_id: String,
    name: String,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    scope: String,
    created_at: String,
}

impl From<&ClientRecord> for ClientView {
    fn from(c: &ClientRecord) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
            scope: c.scope.to_string(),
            created_at: rfc3339(c.created_at),
        }
    }
}

/// A newly created client: the listing plus its secret.
#[derive(Debug, Serialize)]
struct CreatedClient {
    client_id: String,
    client_secret: String,
    name: String,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    scope: String,
    created_at: String,
}

/// `POST /api/oauth/clients` body.
#[derive(Debug, Deserialize)]
struct RegisterParams {
    name: String,
    redirect_uris: Vec<String>,
    grant_types: Option<Vec<String>>,
    scope: Option<ScopeParam>,
}

/// `scope` as `"read write"` or `["read", "write"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopeParam {
    Text(String),
    List(Vec<String>),
}

pub(crate) fn routes() -> Router<MockState> {
    Router::new().route(oauth::CLIENTS, get(list).post(register))
}

/// 401 without a valid session, 403 for a signed-in non-administrator.
fn require_admin(state: &MockState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some((user, _, _)) = current_session(state, headers, UnixTime::now()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in as an administrator: the session cookie is missing, unknown or expired",
        ));
    };
    if !user.is_admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only administrators can manage OAuth clients",
        ));
    }
    Ok(())
}

async fn list(
    State(state): State<MockState>,
    headers: HeaderMap,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    require_admin(&state, &headers)?;
    let db = state.db();
    Ok(Json(db.clients.iter().map(ClientView::from).collect()))
}

async fn register(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedClient>), ApiError> {
    require_admin(&state, &headers)?;
    let now = UnixTime::now();
    let params: RegisterParams = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("bad client registration: {e}")))?;
    let record = check_registration(params, now)?;
    let created = CreatedClient {
        client_id: record.client_id.clone(),
        client_secret: record.client_secret.expose().clone(),
        name: record.name.clone(),
        redirect_uris: record.redirect_uris.clone(),
        grant_types: record.grant_types.clone(),
        scope: record.scope.to_string(),
        created_at: rfc3339(record.created_at),
    };
    tracing::info!(client_id = %record.client_id, name = %record.name, "client registered");
    state.db().clients.push(record);
    Ok((StatusCode::CREATED, Json(created)))
}

/// Validates a registration and mints the client's id and secret.
fn check_registration(params: RegisterParams, now: UnixTime) -> Result<ClientRecord, ApiError> {
    let name = params.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid_request(
            "name must be 1 to 200 characters",
        ));
    }
    if params.redirect_uris.is_empty() {
        return Err(ApiError::invalid_request("redirect_uris must not be empty"));
    }
    for uri in &params.redirect_uris {
        super::config::check_redirect_uri(uri).map_err(ApiError::invalid_request)?;
    }
    let grant_types = match params.grant_types {
        None => default_grant_types(),
        Some(g) if g.is_empty() => default_grant_types(),
        Some(g) => {
            if let Some(bad) = g.iter().find(|t| !GRANT_TYPES.contains(&t.as_str())) {
                return Err(ApiError::invalid_request(format!(
                    "unsupported grant type `{bad}` (supported: {})",
                    GRANT_TYPES.join(", ")
                )));
            }
            g
        }
    };
    let scope = match params.scope {
        None => supported_scope(),
        Some(ScopeParam::Text(s)) => {
            Scope::parse(&s).map_err(|e| ApiError::invalid_request(e.to_string()))?
        }
        Some(ScopeParam::List(l)) => {
            Scope::parse(&l.join(" ")).map_err(|e| ApiError::invalid_request(e.to_string()))?
        }
    };
    if scope.is_empty() || !scope.is_subset(&supported_scope()) {
        return Err(ApiError::invalid_request(format!(
            "scope must be a non-empty subset of `{}`",
            supported_scope()
        )));
    }
    Ok(ClientRecord {
        client_id: format!("tm-{}", random_token(12)),
        client_secret: Secret::new(opaque_token()),
        name: name.to_owned(),
        redirect_uris: params.redirect_uris,
        grant_types,
        scope,
        created_at: now,
    })
}
