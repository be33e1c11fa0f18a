//! HTTP client for TaskManager's clients API (`GET/POST /api/oauth/clients`, authenticated by an
//! administrator's session cookie), and the typed errors its answers map to.

use crate::Kind;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize};
use shared::Secret;
use std::fmt;
use std::time::Duration;
use url::Url;

/// Default path of the clients API under TaskManager's base URL.
pub const CLIENTS_PATH: &str = "/api/oauth/clients";

/// The largest answer read from TaskManager; a list of clients is far smaller.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The longest server-supplied message repeated in an error.
const MAX_MESSAGE: usize = 200;

/// Request timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the TCP (and TLS) connection.
    pub connect: Duration,
    /// For the whole request, body included.
    pub total: Duration,
}

/// An `http(s)` base URL without user info, query or fragment, kept without a trailing slash
/// so that paths can be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    base: String,
    clients_path: String,
}

/// Why a base URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?} is not an absolute URL such as http://localhost:4321")]
    NotAbsolute(String),
    #[error("{0:?} does not use http or https")]
    Scheme(String),
    #[error("it must not contain a user name or password")]
    UserInfo,
    #[error("{0:?} must not contain a query or fragment")]
    QueryOrFragment(String),
    #[error("the path must start with `/`")]
    ClientsPath,
}

impl BaseUrl {
    /// Checks `raw` and keeps `clients_path` (which must start with `/`) for the clients API.
    pub fn parse(raw: &str, clients_path: &str) -> Result<Self, UrlError> {
        let raw = raw.trim();
        let url = Url::parse(raw).map_err(|_| UrlError::NotAbsolute(raw.to_owned()))?;
        if !url.username().is_empty() || url.password().is_some() {
            // The URL is repeated in messages and in TASKMANAGER_BASE_URL: no credentials in it.
            return Err(UrlError::UserInfo);
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme(raw.to_owned()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::NotAbsolute(raw.to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(UrlError::QueryOrFragment(raw.to_owned()));
        }
        if !clients_path.starts_with('/') {
            return Err(UrlError::ClientsPath);
        }
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            clients_path: clients_path.to_owned(),
        })
    }

    /// The normalised base URL, e.g. `http://localhost:4321`.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// The clients API, e.g. `http://localhost:4321/api/oauth/clients`.
    pub fn clients_url(&self) -> String {
        format!("{}{}", self.base, self.clients_path)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// How to get a session cookie, repeated in every error about one.
const HOW_TO_GET_A_COOKIE: &str = "log into TaskManager as an administrator in a browser, open \
the developer tools (Application or Storage tab, Cookies), copy the value of the `session` cookie \
and pass it with --session-cookie or TASKMANAGER_SESSION_COOKIE";

/// An administrator's session cookie, sent as `Cookie: name=value`.
pub struct SessionCookie {
    name: String,
    value: Secret<String>,
}

/// Why the `--session-cookie` value cannot be used. Never repeats the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("no session cookie given; {}", HOW_TO_GET_A_COOKIE)]
    Missing,
    #[error("the --session-cookie list has no cookie named {0:?}; pass only the `session` cookie")]
    NotInList(String),
    #[error("invalid --session-cookie: {0}")]
    Malformed(&'static str),
    #[error("invalid --cookie-name {0:?}: it must be a cookie name such as `session`")]
    Name(String),
}

impl CookieError {
    /// No cookie at all is an authorization failure (4); an unusable one a bad argument (2).
    pub fn kind(&self) -> Kind {
        match self {
            CookieError::Missing => Kind::NotAuthorized,
            _ => Kind::Usage,
        }
    }
}

impl fmt::Debug for SessionCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionCookie({}=[redacted])", self.name)
    }
}

impl SessionCookie {
    /// Reads what the administrator pasted: the bare value (sent under `default_name`),
    /// `name=value`, or a whole `Cookie` header (`a=1; session=…`, with or without the
    /// `Cookie:` prefix) from which the `default_name` cookie is taken.
    ///
    /// A bare value may end in base64 padding (`abc==`); it is `name=value` only when the part
    /// before the first `=` is a cookie name and the rest is more than padding.
    pub fn parse(input: Option<&str>, default_name: &str) -> Result<Self, CookieError> {
        if !is_token(default_name) {
            return Err(CookieError::Name(default_name.to_owned()));
        }
        let mut input = input.map(str::trim).unwrap_or_default();
        if input.is_empty() {
            return Err(CookieError::Missing);
        }
        if let Some(prefix) = input.get(..7)
            && prefix.eq_ignore_ascii_case("cookie:")
        {
            input = input[7..].trim();
        }
        let (name, value) = if input.contains(';') {
            let wanted = input
                .split(';')
                .filter_map(|pair| split_pair(pair.trim()))
                .find(|(name, _)| *name == default_name);
            wanted.ok_or_else(|| CookieError::NotInList(default_name.to_owned()))?
        } else {
            split_pair(input).unwrap_or((default_name, input))
        };
        let value = value.trim();
        // A value copied with its quotes (RFC 6265 §4.1.1 allows a quoted cookie-value).
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if value.is_empty() {
            return Err(CookieError::Missing);
        }
        if !value.bytes().all(is_cookie_octet) {
            return Err(CookieError::Malformed(
                "the value has a character a cookie cannot contain (space, quote, comma, \
                 semicolon, backslash or a control character)",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            value: Secret::new(value.to_owned()),
        })
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn header(&self) -> Option<HeaderValue> {
        let mut value =
            HeaderValue::from_str(&format!("{}={}", self.name, self.value.expose())).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// `name=value` when the text before the first `=` is a cookie name and the rest is not only
/// base64 padding.
fn split_pair(s: &str) -> Option<(&str, &str)> {
    let (name, value) = s.split_once('=')?;
    let name = name.trim();
    (is_token(name) && !value.trim().is_empty() && !value.bytes().all(|b| b == b'='))
        .then_some((name, value))
}

/// RFC 9110 §5.6.2 `token`, the grammar of a cookie name (RFC 6265 §4.1.1).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 6265 §4.1.1 `cookie-octet`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// The body of `POST /api/oauth/clients`.
#[derive(Debug, Clone, Serialize)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Space-delimited, e.g. `read write`.
    pub scope: String,
}

/// A registered client as listed by TaskManager. Has no secret field, so a secret that a
/// TaskManager wrongly included in a listing is dropped here and never printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub client_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Space-delimited; TaskManager may answer a string or an array.
    #[serde(default, deserialize_with = "scope_string_or_list")]
    pub scope: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The answer to a registration: the client and its secret, which TaskManager shows only once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredClient {
    #[serde(flatten)]
    pub info: ClientInfo,
    pub client_secret: Secret<String>,
}

fn scope_string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scope {
        Text(String),
        List(Vec<String>),
    }
    Ok(match Option::<Scope>::deserialize(d)? {
        None => None,
        Some(Scope::Text(s)) => Some(s),
        Some(Scope::List(l)) => Some(l.join(" ")),
    })
}

/// Why TaskManager's clients API did not give us what we asked for. Messages are one sentence
/// and never contain the session cookie or a client secret.
#[derive(Debug, thiserror::Error)]
pub enum TaskManagerError {
    #[error(
        "TaskManager at {url} did not answer within {secs} second{}; check that it is running, \
         or allow more time with --timeout",
        if *.secs == 1 { "" } else { "s" }
    )]
    Timeout { url: String, secs: u64 },
    #[error(
        "cannot reach TaskManager at {url} ({reason}); check --taskmanager-url and that \
         TaskManager is running"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "TaskManager did not accept the `{cookie}` cookie ({answer}): it is expired or not a \
         session; {}",
        HOW_TO_GET_A_COOKIE
    )]
    Unauthorized { cookie: String, answer: String },
    #[error(
        "TaskManager refused the request (HTTP 403): the `{cookie}` cookie is not an \
         administrator's session; {}",
        HOW_TO_GET_A_COOKIE
    )]
    Forbidden { cookie: String },
    #[error("TaskManager refused the request (HTTP {status}){}", colon(.message))]
    Rejected {
        status: u16,
        message: Option<String>,
    },
    #[error(
        "TaskManager at {url} answered {what}; check that --taskmanager-url is TaskManager's \
         base URL"
    )]
    Unexpected { url: String, what: String },
    #[error(
        "TaskManager at {url} failed (HTTP {status}{}); try again later or look at its logs",
        colon(.message)
    )]
    ServerError {
        url: String,
        status: u16,
        message: Option<String>,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

fn colon(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl TaskManagerError {
    /// The exit-code kind of this failure.
    pub fn kind(&self) -> Kind {
        match self {
            TaskManagerError::Timeout { .. } | TaskManagerError::Unreachable { .. } => {
                Kind::Unreachable
            }
            TaskManagerError::Unauthorized { .. } | TaskManagerError::Forbidden { .. } => {
                Kind::NotAuthorized
            }
            TaskManagerError::Rejected { .. }
            | TaskManagerError::ServerError { .. }
            | TaskManagerError::Unexpected { .. } => Kind::Unexpected,
            TaskManagerError::Client(_) => Kind::LocalIo,
        }
    }
}

/// TaskManager's clients API, called with an administrator's session cookie.
pub struct TaskManager {
    http: reqwest::Client,
    clients_url: String,
    cookie: SessionCookie,
    timeouts: Timeouts,
}

impl TaskManager {
    /// A client with the given timeouts on every request, and without redirects: a redirect
    /// usually means "log in first", and following it would send the cookie elsewhere.
    pub fn new(
        base: &BaseUrl,
        cookie: SessionCookie,
        timeouts: Timeouts,
    ) -> Result<Self, TaskManagerError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("setup-client/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .map_err(|e| TaskManagerError::Client(root_cause(&e)))?;
        Ok(Self {
            http,
            clients_url: base.clients_url(),
            cookie,
            timeouts,
        })
    }

    /// `GET /api/oauth/clients`.
    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>, TaskManagerError> {
        let (status, headers, body) = self.send(self.http.get(&self.clients_url)).await?;
        check_status(status, &headers, &body, &[StatusCode::OK], &self.context())?;
        parse_json(&body, &headers, "a JSON array of clients", &self.context())
    }

    /// `POST /api/oauth/clients`.
    pub async fn register(&self, client: &NewClient) -> Result<RegisteredClient, TaskManagerError> {
        let (status, headers, body) = self
            .send(self.http.post(&self.clients_url).json(client))
            .await?;
        let ok = [StatusCode::CREATED, StatusCode::OK];
        check_status(status, &headers, &body, &ok, &self.context())?;
        let registered: RegisteredClient = parse_json(
            &body,
            &headers,
            "the registered client as JSON",
            &self.context(),
        )?;
        if registered.info.client_id.is_empty() || registered.client_secret.expose().is_empty() {
            return Err(self.context().unexpected(format!(
                "HTTP {} without a client_id or client_secret",
                status.as_u16()
            )));
        }
        Ok(registered)
    }

    fn context(&self) -> Context<'_> {
        Context {
            url: &self.clients_url,
            cookie: self.cookie.name(),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), TaskManagerError> {
        let cookie = self.cookie.header().ok_or(TaskManagerError::Client(
            "the session cookie cannot be sent as an HTTP header".to_owned(),
        ))?;
        let mut response = request
            .header(header::COOKIE, cookie)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(self.context().unexpected(format!(
                    "HTTP {} with a body larger than {} MiB",
                    status.as_u16(),
                    MAX_BODY / (1024 * 1024)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    fn transport_error(&self, e: &reqwest::Error) -> TaskManagerError {
        if e.is_timeout() {
            TaskManagerError::Timeout {
                url: self.clients_url.clone(),
                secs: self.timeouts.total.as_secs(),
            }
        } else {
            TaskManagerError::Unreachable {
                url: self.clients_url.clone(),
                reason: root_cause(e),
            }
        }
    }
}

/// What error messages about one request need to know.
struct Context<'a> {
    url: &'a str,
    cookie: &'a str,
}

impl Context<'_> {
    fn unexpected(&self, what: String) -> TaskManagerError {
        TaskManagerError::Unexpected {
            url: self.url.to_owned(),
            what,
        }
    }
}

/// The innermost cause of a transport error (e.g. "Connection refused (os error 111)"), which
/// says more than reqwest's outer "error sending request", and never holds the cookie.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    sanitize_message(&cause.to_string())
}

/// Maps a status other than `ok` to the error the administrator can act on.
fn check_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    ok: &[StatusCode],
    cx: &Context<'_>,
) -> Result<(), TaskManagerError> {
    if ok.contains(&status) {
        return Ok(());
    }
    let code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED => Err(TaskManagerError::Unauthorized {
            cookie: cx.cookie.to_owned(),
            answer: format!("HTTP {code}"),
        }),
        StatusCode::FORBIDDEN => Err(TaskManagerError::Forbidden {
            cookie: cx.cookie.to_owned(),
        }),
        s if s.is_redirection() => {
            let location = headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(location_path)
                .unwrap_or_default();
            if is_login_page(&location) {
                // A web app sends a visitor without a valid session to its login page.
                Err(TaskManagerError::Unauthorized {
                    cookie: cx.cookie.to_owned(),
                    answer: format!("HTTP {code} to its login page"),
                })
            } else {
                Err(cx.unexpected(format!("a redirect (HTTP {code}) to {location:?}")))
            }
        }
        StatusCode::NOT_FOUND => Err(cx.unexpected("HTTP 404 (no clients API there)".to_owned())),
        s if s.is_client_error() => Err(TaskManagerError::Rejected {
            status: code,
            message: error_message(body),
        }),
        s if s.is_server_error() => Err(TaskManagerError::ServerError {
            url: cx.url.to_owned(),
            status: code,
            message: error_message(body),
        }),
        _ => Err(cx.unexpected(format!("HTTP {code}"))),
    }
}

/// The path of a `Location` header, absolute or relative, without query or fragment.
fn location_path(location: &str) -> String {
    let path = match Url::parse(location) {
        Ok(url) => url.path().to_owned(),
        Err(_) => location
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    sanitize_message(&path)
}

fn is_login_page(path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    ["login", "signin", "sign-in", "sign_in"]
        .iter()
        .any(|p| path.contains(p))
}

/// The `message` (or `error_description`, or `error`) of a JSON error body, made safe to print.
fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["message", "error_description", "error"]
        .iter()
        .find_map(|k| value.get(*k).and_then(|v| v.as_str()))
        .map(sanitize_message)
        .filter(|m| !m.is_empty())
}

/// One line of at most [`MAX_MESSAGE`] characters without control characters, so that a
/// server-supplied text cannot forge terminal output.
pub fn sanitize_message(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    if s.chars().count() > MAX_MESSAGE {
        out.push('…');
    }
    out.trim().to_owned()
}

/// Parses a JSON answer; what went wrong is described by position and kind only, because
/// serde's messages can quote values, and a value may be the client secret.
fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    headers: &HeaderMap,
    expected: &str,
    cx: &Context<'_>,
) -> Result<T, TaskManagerError> {
    serde_json::from_slice(body).map_err(|e| {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| sanitize_message(v.split(';').next().unwrap_or_default()))
            .unwrap_or_else(|| "no content type".to_owned());
        let why = match e.classify() {
            serde_json::error::Category::Data => {
                let msg = e.to_string();
                match msg.find("missing field") {
                    Some(i) => msg[i..]
                        .split(" at line")
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    None => "a field has the wrong type".to_owned(),
                }
            }
            serde_json::error::Category::Eof if body.is_empty() => "an empty body".to_owned(),
            _ => "not JSON".to_owned(),
        };
        cx.unexpected(format!(
            "something other than {expected} ({why}, {content_type})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(input: &str) -> Result<(String, String), CookieError> {
        SessionCookie::parse(Some(input), "session")
            .map(|c| (c.name.clone(), c.value.expose().clone()))
    }

    fn pair(name: &str, value: &str) -> Result<(String, String), CookieError> {
        Ok((name.to_owned(), value.to_owned()))
    }

    #[test]
    fn bare_value_is_sent_under_the_cookie_name() {
        assert_eq!(cookie("abc123"), pair("session", "abc123"));
        assert_eq!(cookie("  abc123\n"), pair("session", "abc123"));
        let c = SessionCookie::parse(Some("abc"), "tm_sid").unwrap();
        assert_eq!(c.name(), "tm_sid");
    }

    #[test]
    fn base64_padding_is_part_of_a_bare_value() {
        assert_eq!(cookie("YWJjZA=="), pair("session", "YWJjZA=="));
        assert_eq!(cookie("YWJjZGU="), pair("session", "YWJjZGU="));
    }

    #[test]
    fn name_value_pairs_and_cookie_headers_are_understood() {
        assert_eq!(cookie("session=abc"), pair("session", "abc"));
        assert_eq!(cookie("session=YWJjZA=="), pair("session", "YWJjZA=="));
        assert_eq!(cookie("other=abc"), pair("other", "abc"));
        assert_eq!(cookie("session=\"abc\""), pair("session", "abc"));
        assert_eq!(
            cookie("theme=dark; session=abc; lang=en"),
            pair("session", "abc")
        );
        assert_eq!(
            cookie("Cookie: theme=dark; session=abc"),
            pair("session", "abc")
        );
        assert_eq!(cookie("session=abc;"), pair("session", "abc"));
    }

    #[test]
    fn missing_and_malformed_cookies_are_refused_without_repeating_them() {
        assert_eq!(
            SessionCookie::parse(None, "session").err(),
            Some(CookieError::Missing)
        );
        assert_eq!(cookie("   ").err(), Some(CookieError::Missing));
        assert_eq!(cookie("session=\"\"").err(), Some(CookieError::Missing));
        assert_eq!(
            cookie("theme=dark; lang=en").err(),
            Some(CookieError::NotInList("session".into()))
        );
        let e = cookie("secret value").err().unwrap();
        assert!(matches!(e, CookieError::Malformed(_)));
        assert!(!e.to_string().contains("secret"));
        assert!(SessionCookie::parse(Some("abc"), "bad name").is_err());
        assert_eq!(
            cookie("").err().map(|e| e.kind()),
            Some(Kind::NotAuthorized)
        );
    }

    #[test]
    fn cookie_debug_is_redacted() {
        let c = SessionCookie::parse(Some("hunter2"), "session").unwrap();
        assert_eq!(format!("{c:?}"), "SessionCookie(session=[redacted])");
        assert!(c.header().unwrap().is_sensitive());
    }

    #[test]
    fn base_urls_are_checked_and_normalised() {
        let u = BaseUrl::parse("http://localhost:4321/", CLIENTS_PATH).unwrap();
        assert_eq!(u.as_str(), "http://localhost:4321");
        assert_eq!(u.clients_url(), "http://localhost:4321/api/oauth/clients");
        let u = BaseUrl::parse(" https://tm.example.com/app/ ", "/x").unwrap();
        assert_eq!(u.clients_url(), "https://tm.example.com/app/x");
        for bad in [
            "localhost:4321",
            "not a url",
            "ftp://host",
            "http://u:p@host",
            "http://h/?q=1",
            "http://h/#f",
            "",
        ] {
            assert!(BaseUrl::parse(bad, CLIENTS_PATH).is_err(), "{bad}");
        }
        assert_eq!(
            BaseUrl::parse("http://h", "api").err(),
            Some(UrlError::ClientsPath)
        );
    }

    #[test]
    fn scope_may_be_a_string_or_a_list() {
        let a: ClientInfo = serde_json::from_str(
            r#"{"client_id":"c","name":"n","redirect_uris":[],"scope":["read","write"]}"#,
        )
        .unwrap();
        assert_eq!(a.scope.as_deref(), Some("read write"));
        let b: ClientInfo = serde_json::from_str(r#"{"client_id":"c","scope":"read"}"#).unwrap();
        assert_eq!(b.scope.as_deref(), Some("read"));
    }

    #[test]
    fn a_listed_secret_is_dropped() {
        let a: ClientInfo =
            serde_json::from_str(r#"{"client_id":"c","client_secret":"s3cr3t"}"#).unwrap();
        assert!(!serde_json::to_string(&a).unwrap().contains("s3cr3t"));
    }

    fn cx() -> Context<'static> {
        Context {
            url: "http://tm/api/oauth/clients",
            cookie: "session",
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        let h = HeaderMap::new();
        let kind = |s: u16, body: &[u8]| {
            check_status(
                StatusCode::from_u16(s).unwrap(),
                &h,
                body,
                &[StatusCode::OK],
                &cx(),
            )
            .err()
            .map(|e| e.kind())
        };
        assert_eq!(kind(200, b""), None);
        assert_eq!(kind(401, b""), Some(Kind::NotAuthorized));
        assert_eq!(kind(403, b""), Some(Kind::NotAuthorized));
        assert_eq!(kind(404, b""), Some(Kind::Unexpected));
        assert_eq!(kind(400, b"{}"), Some(Kind::Unexpected));
        assert_eq!(kind(500, b""), Some(Kind::Unexpected));
        assert_eq!(kind(204, b""), Some(Kind::Unexpected));
    }

    #[test]
    fn a_redirect_to_a_login_page_means_the_cookie_is_not_valid() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("/login?next=%2Fapi"),
        );
        let e = check_status(StatusCode::FOUND, &h, b"", &[StatusCode::OK], &cx()).unwrap_err();
        assert_eq!(e.kind(), Kind::NotAuthorized);
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("https://elsewhere.example/x"),
        );
        let e = check_status(StatusCode::FOUND, &h, b"", &[StatusCode::OK], &cx()).unwrap_err();
        assert_eq!(e.kind(), Kind::Unexpected);
        assert!(e.to_string().contains("\"/x\""), "{e}");
    }

    #[test]
    fn cookie_errors_say_how_to_get_a_fresh_cookie() {
        let e = TaskManagerError::Forbidden {
            cookie: "session".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("administrator") && msg.contains("developer tools"),
            "{msg}"
        );
    }

    #[test]
    fn server_messages_are_quoted_safely() {
        let e = check_status(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"error":"invalid_request","message":"bad\u001b[31m name"}"#,
            &[StatusCode::OK],
            &cx(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "TaskManager refused the request (HTTP 400): bad [31m name"
        );
        assert_eq!(
            sanitize_message(&"x".repeat(300)).chars().count(),
            MAX_MESSAGE + 1
        );
    }

    #[test]
    fn json_errors_never_quote_values() {
        let h = HeaderMap::new();
        let e = parse_json::<RegisteredClient>(
            br#"{"client_id":"c","client_secret":42}"#,
            &h,
            "the registered client",
            &cx(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("42"), "{e}");
        assert_eq!(e.kind(), Kind::Unexpected);
        let e =
            parse_json::<RegisteredClient>(br#"{"client_id":"c"}"#, &h, "x", &cx()).unwrap_err();
        assert!(
            e.to_string().contains("missing field `client_secret`"),
            "{e}"
        );
        let e = parse_json::<Vec<ClientInfo>>(b"<html>", &h, "x", &cx()).unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }
}
