//! Client ID Metadata Documents (MCP 2025-11-25 authorization, "Client ID Metadata Documents";
//! draft-ietf-oauth-client-id-metadata-document-00): a `client_id` that is an HTTPS URL names
//! a JSON document of RFC 7591 §2 client metadata, which we fetch instead of a registration.
//!
//! - §3 "Client Identifier": https, a path, no dot segments, no fragment, no user info.
//! - §4 "Client Information Discovery": the document's `client_id` equals the URL by simple
//!   string comparison (RFC 3986 §6.2.1); errors and invalid documents are never cached; a
//!   document may be cached (here by its `Cache-Control`, clamped).
//! - §6 "Security Considerations": no shared secrets (the client is public, authenticated by
//!   PKCE alone); SSRF — the host's addresses are resolved and vetted *before* connecting,
//!   the connection is pinned to the vetted addresses (no DNS rebinding), no redirects, no
//!   proxies, bounded time and size. The consent page shows the URL's host.
//!
//! The resolved client is also written to the store, so the consent page (possibly on another
//! replica) and token binding see the same record; the token and revocation endpoints always
//! re-resolve through the cache, so a changed document takes effect within its cache lifetime.

use crate::state::AppState;
use crate::store::{ClientRecord, StoreError};
use axum::http::header;
use serde_json::Value;
use shared::redirect_uri::PrivateUseSchemes;
use shared::secret::TokenHash;
use shared::{Scope, UnixTime};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::{Host, Url};

/// Largest metadata document we read.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Bound on resolving, connecting and reading the document, each and in total.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Cache lifetime of a document served without `Cache-Control: max-age`.
pub const DEFAULT_TTL_SECS: u64 = 5 * 60;
/// Longest cache lifetime, whatever the document's headers say.
pub const MAX_TTL_SECS: u64 = 24 * 3600;
/// Most documents cached at once.
pub const MAX_CACHE_ENTRIES: usize = 1024;
/// Longest `client_id` URL we consider.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL `client_id` could not be resolved to a client.
#[derive(Debug, thiserror::Error)]
pub enum CimdError {
    #[error("client_id URL {0}")]
    Url(&'static str),
    #[error("the client_id host could not be resolved")]
    Resolve,
    #[error("the client_id host resolves to a private, loopback or otherwise non-public address")]
    ForbiddenAddress,
    #[error("the metadata document could not be fetched: {0}")]
    Fetch(String),
    #[error("the metadata document request answered HTTP {0} (redirects are not followed)")]
    Status(u16),
    #[error("the metadata document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the metadata document is invalid: {0}")]
    Document(Cow<'static, str>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CimdError {
    /// Text safe to show the user or the client: network detail stays in the log.
    pub fn public_message(&self) -> String {
        match self {
            CimdError::Fetch(_) => "the metadata document could not be fetched".into(),
            CimdError::Store(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}

/// Whether `client_id` is meant as a metadata document URL (DCR ids never contain `:`).
pub fn is_url_client_id(client_id: &str) -> bool {
    let lower = |n: usize| client_id.get(..n).map(str::to_ascii_lowercase);
    lower(8).as_deref() == Some("https://") || lower(7).as_deref() == Some("http://")
}

/// Draft §3: the shape of a client identifier URL. `allow_loopback_http` (tests only) also
/// admits `http://127.0.0.1[:port]/...`.
pub fn check_client_id_url(raw: &str, allow_loopback_http: bool) -> Result<Url, CimdError> {
    if raw.len() > MAX_URL_LEN {
        return Err(CimdError::Url("is too long"));
    }
    if raw.contains('#') {
        return Err(CimdError::Url("must not contain a fragment"));
    }
    let url = Url::parse(raw).map_err(|_| CimdError::Url("is not a valid URL"))?;
    let loopback_http = url.scheme() == "http"
        && allow_loopback_http
        && url.host() == Some(Host::Ipv4(Ipv4Addr::LOCALHOST));
    if url.scheme() != "https" && !loopback_http {
        return Err(CimdError::Url("must use https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CimdError::Url("must not contain a user name or password"));
    }
    match url.host() {
        Some(Host::Domain(d)) if !d.is_empty() => {}
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => {}
        _ => return Err(CimdError::Url("must name a host")),
    }
    if has_dot_segment(raw) {
        return Err(CimdError::Url("must not contain . or .. path segments"));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(CimdError::Url("must contain a path"));
    }
    Ok(url)
}

/// Whether the raw URL's path has a `.` or `..` segment (also percent-encoded). Checked on the
/// raw text because URL parsing removes them.
fn has_dot_segment(raw: &str) -> bool {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let Some(slash) = after_scheme.find('/') else {
        return false;
    };
    let path = &after_scheme[slash..];
    let path = path.split('?').next().unwrap_or(path);
    path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    })
}

/// Whether an address may be fetched from: a globally routable unicast address. Refuses
/// "this network", private, shared (CGNAT), loopback, link-local, documentation, benchmarking,
/// reserved, multicast and broadcast ranges; IPv6 is allowed only within global unicast
/// `2000::/3` minus its special blocks; IPv4-mapped/compatible IPv6 is judged as IPv4.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network", 0.0.0.0/8
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), 100.64/10
        || (a == 169 && b == 254) // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // documentation TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible) carry an IPv4 address.
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        let v4 = Ipv4Addr::new(
            (s[6] >> 8) as u8,
            (s[6] & 0xff) as u8,
            (s[7] >> 8) as u8,
            (s[7] & 0xff) as u8,
        );
        return s[5] == 0xffff && is_public_v4(v4);
    }
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    // 2001::/23: IETF protocol assignments (Teredo, ORCHID, benchmarking); 2001:db8::/32:
    // documentation.
    let special = (s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8))
        || s[0] == 0x2002 // 6to4: embeds an arbitrary IPv4 address
        || (s[0] & 0xfff0) == 0x3ff0; // documentation 3fff::/20
    global_unicast && !special
}

/// Cache lifetime from a `Cache-Control` header: `no-store`/`no-cache` → 0 (not cached),
/// `max-age=N` → N clamped to [`MAX_TTL_SECS`], an unreadable max-age → 0, none → the default.
pub fn cache_ttl(cache_control: Option<&str>) -> u64 {
    let Some(value) = cache_control else {
        return DEFAULT_TTL_SECS;
    };
    let mut ttl = None;
    for directive in value.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return 0;
        }
        if let Some(secs) = directive.strip_prefix("max-age=") {
            let secs = secs.trim_matches('"');
            ttl = Some(secs.parse::<u64>().map_or(0, |n| n.min(MAX_TTL_SECS)));
        }
    }
    ttl.unwrap_or(DEFAULT_TTL_SECS)
}

/// The client metadata a document declares, checked (draft §4, §6; RFC 7591 §2).
pub fn check_document(
    client_id: &str,
    body: &[u8],
    offered: &Scope,
    private_use: PrivateUseSchemes,
) -> Result<super::register::AcceptedMetadata, CimdError> {
    let bad = |m: &'static str| CimdError::Document(Cow::Borrowed(m));
    let mut doc: Value = serde_json::from_slice(body).map_err(|_| bad("not JSON"))?;
    let Some(fields) = doc.as_object_mut() else {
        return Err(bad("not a JSON object"));
    };
    match fields.get("client_id") {
        Some(Value::String(id)) if id == client_id => {}
        Some(Value::String(_)) => return Err(bad("its client_id does not equal its URL")),
        _ => return Err(bad("client_id is missing")),
    }
    if fields.contains_key("client_secret") || fields.contains_key("client_secret_expires_at") {
        return Err(bad("it must not contain a client secret"));
    }
    // No secret can be shared with a client that registered nowhere: it is a public client.
    match fields.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => {
            fields.insert("token_endpoint_auth_method".into(), "none".into());
        }
        Some(Value::String(m)) if m == "none" => {}
        Some(_) => {
            return Err(bad(
                "token_endpoint_auth_method must be none (no shared secrets for URL client ids)",
            ));
        }
    }
    match fields.get("redirect_uris") {
        Some(Value::Array(a)) if !a.is_empty() => {}
        _ => return Err(bad("redirect_uris is required")),
    }
    super::register::check_metadata(&doc, offered, private_use)
        .map_err(|e| CimdError::Document(e.description))
}

/// The client record a checked document stands for; keeps the first-seen and first-used times
/// of an earlier record of the same URL.
pub fn client_record(
    client_id: &str,
    meta: super::register::AcceptedMetadata,
    earlier: Option<&ClientRecord>,
    now: UnixTime,
    unused_ttl: Duration,
) -> ClientRecord {
    meta.into_record(super::register::RecordKeeping {
        client_id: client_id.to_owned(),
        secret_hash: None,
        // Never equal to a registration's fingerprint, so DCR can never hand out this record.
        fingerprint: format!("cimd:{}", TokenHash::of(client_id).as_str()),
        created_at: earlier.map_or(now, |c| c.created_at),
        first_used_at: earlier.and_then(|c| c.first_used_at),
        unused_expires_at: now.plus(unused_ttl),
    })
}

/// Resolved documents by URL, each until its cache lifetime ends. Per replica; bounded.
/// Fetches are single-flight per URL: requests that miss the cache together wait for one
/// fetch instead of each sending their own (no fan-out at the document's host).
#[derive(Debug, Default)]
pub struct MetadataCache {
    entries: Mutex<HashMap<String, (UnixTime, ClientRecord)>>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one fetch of a URL is under way; removes its lock from the table when dropped.
struct FetchTurn<'a> {
    cache: &'a MetadataCache,
    url: String,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for FetchTurn<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.cache.fetching.lock() {
            map.remove(&self.url);
        }
    }
}

impl MetadataCache {
    /// Waits for the turn to fetch `url` (after any fetch of it already under way).
    async fn turn(&self, url: &str) -> Option<FetchTurn<'_>> {
        let lock = {
            let mut map = self.fetching.lock().ok()?;
            map.entry(url.to_owned()).or_default().clone()
        };
        Some(FetchTurn {
            cache: self,
            url: url.to_owned(),
            _turn: lock.lock_owned().await,
        })
    }

    /// The cached client for `url`, if still fresh at `now`.
    pub fn get(&self, url: &str, now: UnixTime) -> Option<ClientRecord> {
        let map = self.entries.lock().ok()?;
        map.get(url)
            .filter(|(until, _)| *until > now)
            .map(|(_, c)| c.clone())
    }

    /// Caches `client` for `ttl_secs` (0: not at all). When full, expired entries go first,
    /// then the one closest to expiry.
    pub fn put(&self, url: &str, client: ClientRecord, ttl_secs: u64, now: UnixTime) {
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        if ttl_secs == 0 {
            map.remove(url);
            return;
        }
        if map.len() >= MAX_CACHE_ENTRIES && !map.contains_key(url) {
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= MAX_CACHE_ENTRIES {
                let soonest = map
                    .iter()
                    .min_by_key(|(_, (until, _))| *until)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    map.remove(&k);
                }
            }
        }
        let until = now.plus(Duration::from_secs(ttl_secs));
        map.insert(url.to_owned(), (until, client));
    }
}

/// The client named by `client_id`: from its metadata document if it is a URL, else from the
/// store (dynamic registration). `Ok(None)`: an unknown registered client.
pub async fn find_client(
    app: &AppState,
    client_id: &str,
    now: UnixTime,
) -> Result<Option<ClientRecord>, CimdError> {
    if is_url_client_id(client_id) {
        resolve(app, client_id, now).await.map(Some)
    } else {
        Ok(app.store.get_client(client_id).await?)
    }
}

/// Resolves a URL `client_id`: cache, else fetch, check, store and cache. Failures are never
/// cached (draft §4).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn resolve(
    app: &AppState,
    client_id: &str,
    now: UnixTime,
) -> Result<ClientRecord, CimdError> {
    let allow_loopback = app.settings.cimd_allow_loopback_http;
    let url = check_client_id_url(client_id, allow_loopback)?;
    if let Some(client) = app.client_metadata.get(client_id, now) {
        return Ok(client);
    }
    // One fetch at a time per URL; whoever waited finds the first one's answer in the cache.
    let _turn = app.client_metadata.turn(client_id).await;
    if let Some(client) = app.client_metadata.get(client_id, now) {
        return Ok(client);
    }
    let result = async {
        let fetched = fetch(&url, allow_loopback).await?;
        let meta = check_document(
            client_id,
            &fetched.body,
            &app.settings.mcp_scopes,
            app.settings.private_use_redirects,
        )?;
        Ok::<_, CimdError>((meta, fetched.ttl_secs))
    }
    .await;
    let (meta, ttl_secs) = match result {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(target: "security", %client_id, error = %e, "client metadata document refused");
            return Err(e);
        }
    };
    let earlier = app.store.get_client(client_id).await?;
    let client = client_record(
        client_id,
        meta,
        earlier.as_ref(),
        now,
        app.settings.unused_client_ttl,
    );
    app.store.put_client(&client).await?;
    app.client_metadata
        .put(client_id, client.clone(), ttl_secs, now);
    tracing::info!(target: "security", %client_id, ttl_secs, "client metadata document accepted");
    Ok(client)
}

/// A fetched document and its cache lifetime.
struct Fetched {
    body: Vec<u8>,
    ttl_secs: u64,
}

/// Draft §6 (SSRF, response size): resolve, vet every address, connect only to those.
async fn fetch(url: &Url, allow_loopback_http: bool) -> Result<Fetched, CimdError> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch_unbounded(url, allow_loopback_http))
        .await
        .map_err(|_| CimdError::Fetch("timed out".into()))?
}

async fn fetch_unbounded(url: &Url, allow_loopback_http: bool) -> Result<Fetched, CimdError> {
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(Host::Domain(d)) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|_| CimdError::Resolve)?
            .collect(),
        None => return Err(CimdError::Url("must name a host")),
    };
    if addrs.is_empty() {
        return Err(CimdError::Resolve);
    }
    // The test-only exemption: plain http to the literal 127.0.0.1 (check_client_id_url
    // admits no other http URL).
    let exempt = allow_loopback_http && url.scheme() == "http";
    if !exempt && !addrs.iter().all(|a| is_public_ip(a.ip())) {
        return Err(CimdError::ForbiddenAddress);
    }
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(FETCH_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("mcp-auth-server/", env!("CARGO_PKG_VERSION")));
    if let Some(Host::Domain(d)) = url.host() {
        // Pin the vetted addresses: a second DNS answer (rebinding) is never consulted.
        builder = builder.resolve_to_addrs(d, &addrs);
    }
    let http = builder
        .build()
        .map_err(|e| CimdError::Fetch(e.to_string()))?;
    let mut response = http
        .get(url.clone())
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| CimdError::Fetch(e.without_url().to_string()))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(CimdError::Status(response.status().as_u16()));
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    if !is_json {
        return Err(CimdError::Document(
            "it is not served as application/json".into(),
        ));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(CimdError::TooLarge);
    }
    let ttl_secs = cache_ttl(
        response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
    );
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CimdError::Fetch(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(CimdError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { body, ttl_secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "2001::1",
            "2002:7f00:1::1",
            "64:ff9b::7f00:1",
            "100::1",
        ] {
            assert!(!is_public_ip(ip(s)), "{s} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "169.253.0.1",
            "192.0.1.1",
            "223.255.255.254",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
        ] {
            assert!(is_public_ip(ip(s)), "{s} must be allowed");
        }
    }

    #[test]
    fn client_id_url_shape() {
        let ok = |s: &str| check_client_id_url(s, false).is_ok();
        assert!(ok("https://app.example.com/oauth/client.json"));
        assert!(ok("https://app.example.com:8443/c?v=1"));
        assert!(!ok("http://app.example.com/client.json"));
        assert!(!ok("https://app.example.com"));
        assert!(!ok("https://app.example.com/"));
        assert!(!ok("https://app.example.com/client.json#x"));
        assert!(!ok("https://app.example.com/a/../client.json"));
        assert!(!ok("https://app.example.com/./client.json"));
        assert!(!ok("https://app.example.com/a/%2E%2e/client.json"));
        assert!(!ok("https://user:pw@app.example.com/client.json"));
        assert!(!ok("https://user@app.example.com/client.json"));
        assert!(!ok(&format!("https://a.test/{}", "x".repeat(MAX_URL_LEN))));
        // The query may mention dots.
        assert!(ok("https://app.example.com/c?p=../x"));
        // Loopback http only with the test flag, and only on 127.0.0.1.
        assert!(!ok("http://127.0.0.1:3000/client.json"));
        assert!(check_client_id_url("http://127.0.0.1:3000/client.json", true).is_ok());
        assert!(check_client_id_url("http://localhost:3000/client.json", true).is_err());
        assert!(check_client_id_url("http://10.0.0.1/client.json", true).is_err());
    }

    #[test]
    fn url_client_ids_are_recognised() {
        assert!(is_url_client_id("https://a.test/c"));
        assert!(is_url_client_id("HTTPS://a.test/c"));
        assert!(is_url_client_id("http://127.0.0.1/c"));
        assert!(!is_url_client_id("Zq3-abc_123"));
        assert!(!is_url_client_id("http"));
    }

    #[test]
    fn cache_control_is_honoured_and_clamped() {
        assert_eq!(cache_ttl(None), DEFAULT_TTL_SECS);
        assert_eq!(cache_ttl(Some("public")), DEFAULT_TTL_SECS);
        assert_eq!(cache_ttl(Some("max-age=60")), 60);
        assert_eq!(cache_ttl(Some("public, Max-Age=\"120\"")), 120);
        assert_eq!(cache_ttl(Some("max-age=0")), 0);
        assert_eq!(cache_ttl(Some("max-age=99999999")), MAX_TTL_SECS);
        assert_eq!(cache_ttl(Some("max-age=-5")), 0);
        assert_eq!(cache_ttl(Some("max-age=600, no-store")), 0);
        assert_eq!(cache_ttl(Some("no-cache")), 0);
    }

    const URL: &str = "https://app.example.com/client.json";

    fn doc(v: serde_json::Value) -> Result<super::super::register::AcceptedMetadata, CimdError> {
        check_document(
            URL,
            &serde_json::to_vec(&v).unwrap(),
            &Scope::parse("read write").unwrap(),
            PrivateUseSchemes::Refused,
        )
    }

    #[test]
    fn documents_are_checked() {
        use serde_json::json;
        let m = doc(json!({"client_id": URL, "client_name": "App",
            "redirect_uris": ["http://127.0.0.1:3000/cb"]}))
        .unwrap();
        assert_eq!(m.token_endpoint_auth_method, "none");
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(m.client_name.as_deref(), Some("App"));
        assert!(
            doc(
                json!({"client_id": URL, "redirect_uris": ["https://a.test/cb"],
            "token_endpoint_auth_method": "none"})
            )
            .is_ok()
        );
        let refused = [
            json!({"client_id": "https://other.example.com/client.json",
                "redirect_uris": ["https://a.test/cb"]}),
            json!({"client_id": "https://APP.example.com/client.json",
                "redirect_uris": ["https://a.test/cb"]}),
            json!({"redirect_uris": ["https://a.test/cb"]}),
            json!({"client_id": URL}),
            json!({"client_id": URL, "redirect_uris": []}),
            json!({"client_id": URL, "redirect_uris": ["http://evil.test/cb"]}),
            json!({"client_id": URL, "redirect_uris": ["https://a.test/cb"],
                "token_endpoint_auth_method": "client_secret_basic"}),
            json!({"client_id": URL, "redirect_uris": ["https://a.test/cb"],
                "client_secret": "s"}),
            json!({"client_id": URL, "redirect_uris": ["https://a.test/cb"],
                "grant_types": ["client_credentials"]}),
            json!([URL]),
        ];
        for d in refused {
            assert!(
                matches!(doc(d.clone()), Err(CimdError::Document(_))),
                "{d} must be refused"
            );
        }
        assert!(matches!(
            check_document(
                URL,
                b"not json",
                &Scope::parse("read").unwrap(),
                PrivateUseSchemes::Refused
            ),
            Err(CimdError::Document(_))
        ));
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let meta = doc(serde_json::json!({"client_id": URL,
            "redirect_uris": ["https://a.test/cb"]}))
        .unwrap();
        let rec = client_record(URL, meta, None, UnixTime(100), Duration::from_secs(60));
        assert!(rec.secret_hash.is_none());
        assert!(rec.fingerprint.starts_with("cimd:"));
        let cache = MetadataCache::default();
        cache.put(URL, rec.clone(), 10, UnixTime(100));
        assert_eq!(cache.get(URL, UnixTime(109)), Some(rec.clone()));
        assert_eq!(cache.get(URL, UnixTime(110)), None);
        cache.put(URL, rec.clone(), 0, UnixTime(100));
        assert_eq!(cache.get(URL, UnixTime(100)), None);
        for i in 0..MAX_CACHE_ENTRIES + 10 {
            cache.put(
                &format!("{URL}?{i}"),
                rec.clone(),
                10 + i as u64,
                UnixTime(0),
            );
        }
        let len = cache.entries.lock().unwrap().len();
        assert_eq!(len, MAX_CACHE_ENTRIES);
        assert!(cache.get(&format!("{URL}?0"), UnixTime(1)).is_none());
    }
}
