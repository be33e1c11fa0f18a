//! The fixed user accounts, browser sessions, and the login/logout pages.

use super::pages;
use super::state::{MockState, SessionRecord};
use super::util::{cookie, is_safe_next, param, parse_params};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use shared::UnixTime;
use shared::secret::{TokenHash, constant_time_eq, opaque_token};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "session";
/// How long a browser session lasts, seconds.
const SESSION_TTL: u64 = 12 * 3600;

/// A TaskManager account.
#[derive(Debug)]
pub struct User {
    pub username: &'static str,
    password: &'static str,
    /// The stable subject identifier (`sub`).
    pub sub: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    pub is_admin: bool,
}

/// The accounts of the mock: two members and an administrator.
pub static USERS: [User; 3] = [
    User {
        username: "alice",
        password: "password",
        sub: "user-alice",
        name: "Alice Example",
        email: "alice@example.com",
        is_admin: false,
    },
    User {
        username: "bob",
        password: "password",
        sub: "user-bob",
        name: "Bob Example",
        email: "bob@example.com",
        is_admin: false,
    },
    User {
        username: "admin",
        password: "admin",
        sub: "user-admin",
        name: "Ada Admin",
        email: "admin@example.com",
        is_admin: true,
    },
];

/// The user with this username and password.
pub fn authenticate(username: &str, password: &str) -> Option<&'static User> {
    let user = USERS.iter().find(|u| u.username == username)?;
    constant_time_eq(user.password, password).then_some(user)
}

/// The user with this subject.
pub fn by_sub(sub: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.sub == sub)
}

/// The signed-in user of this request and their session, if the `session` cookie is valid.
pub(crate) fn current_session(
    state: &MockState,
    headers: &HeaderMap,
    now: UnixTime,
) -> Option<(&'static User, TokenHash, SessionRecord)> {
    let hash = TokenHash::of(cookie(headers, SESSION_COOKIE)?);
    let record = state.db().sessions.get(&hash).cloned()?;
    if now >= record.expires_at {
        return None;
    }
    Some((by_sub(&record.sub)?, hash, record))
}

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
}

async fn home(State(state): State<MockState>, headers: HeaderMap) -> Response {
    let user = current_session(&state, &headers, UnixTime::now()).map(|(u, _, _)| u);
    pages::home(user).into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    let next = q.next.filter(|n| is_safe_next(n)).unwrap_or_default();
    pages::login(&next, None).into_response()
}

async fn login(State(state): State<MockState>, body: String) -> Response {
    let now = UnixTime::now();
    let params = match parse_params(&body) {
        Ok(p) => p,
        Err(e) => return pages::error(StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    let next = param(&params, "next")
        .filter(|n| is_safe_next(n))
        .unwrap_or("/");
    let username = param(&params, "username").unwrap_or_default();
    let password = param(&params, "password").unwrap_or_default();
    let Some(user) = authenticate(username, password) else {
        tracing::info!(target: "security", username, "login failed");
        let mut page = pages::login(next, Some("Wrong username or password.")).into_response();
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    };
    let token = opaque_token();
    state.db().sessions.insert(
        TokenHash::of(&token),
        SessionRecord {
            sub: user.sub.to_owned(),
            csrf: opaque_token(),
            expires_at: now.plus(std::time::Duration::from_secs(SESSION_TTL)),
        },
    );
    tracing::info!(target: "security", username = user.username, "login");
    let cookie = format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/");
    with_cookie(Redirect::to(next).into_response(), &cookie)
}

async fn logout(State(state): State<MockState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.db().sessions.remove(&TokenHash::of(token));
    }
    let cookie = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
    with_cookie(Redirect::to("/login").into_response(), &cookie)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
