//! Small pure helpers: parameter parsing, cookies, percent-decoding and RFC 3339 time.

use axum::http::{HeaderMap, header};
use shared::UnixTime;
use std::collections::HashMap;

/// Parses `application/x-www-form-urlencoded` text (a query string or a form body) into a map.
/// A parameter given twice is refused (RFC 6749 §3.1 and §3.2: "parameters MUST NOT be included
/// more than once"); the error names it.
pub(crate) fn parse_params(raw: &str) -> Result<HashMap<String, String>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|e| format!("malformed parameters: {e}"))?;
    let mut map = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if map.contains_key(&name) {
            return Err(format!("parameter `{name}` is repeated"));
        }
        map.insert(name, value);
    }
    Ok(map)
}

/// A non-empty parameter, if present. Empty values count as absent (RFC 6749 §3.1).
pub(crate) fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte
/// (RFC 6749 §2.3.1 / Appendix B, for client credentials in HTTP Basic).
pub(crate) fn form_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or("truncated percent-escape")?;
                let hex = std::str::from_utf8(hex).map_err(|_| "bad percent-escape")?;
                let byte = u8::from_str_radix(hex, 16).map_err(|_| "bad percent-escape")?;
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8")
}

/// A Unix time as RFC 3339 in UTC, e.g. `2024-05-01T12:00:00Z`.
pub(crate) fn rfc3339(t: UnixTime) -> String {
    let days = t.0 / 86_400;
    let secs = t.0 % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Whether `next` is a same-site relative path, safe to redirect to after login
/// (no scheme, no `//host`, no backslashes that browsers treat as slashes).
pub(crate) fn is_safe_next(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UnixTime(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UnixTime(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UnixTime(1_700_000_000)), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn form_decode_handles_plus_and_escapes() {
        assert_eq!(form_decode("a%3Ab+c%2B").unwrap(), "a:b c+");
        assert!(form_decode("%4").is_err());
        assert!(form_decode("%zz").is_err());
        assert!(form_decode("%ff").is_err());
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(parse_params("a=1&a=2").is_err());
        assert_eq!(parse_params("a=1&b=x+y").unwrap()["b"], "x y");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "x=1; session=abc; y=2".parse().unwrap());
        assert_eq!(cookie(&h, "session"), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn only_relative_next_is_safe() {
        assert!(is_safe_next("/api/oauth/authorize?x=1"));
        assert!(!is_safe_next("//evil.example/"));
        assert!(!is_safe_next("https://evil.example/"));
        assert!(!is_safe_next("/\\evil.example"));
    }
}
