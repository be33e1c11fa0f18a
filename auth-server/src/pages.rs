//! HTML pages a person sees: the consent page and error pages. Plain, readable, no
//! JavaScript; every client-supplied value escaped; never framed; never cached.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;\
padding:0 1rem;color:#1a1a1a;line-height:1.5}h1{font-size:1.4rem}.box{border:1px solid #ccc;\
border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}.host{font-size:1.3rem;font-weight:700;\
word-break:break-all}.uri{font-family:monospace;word-break:break-all;color:#444}\
button{font-size:1rem;padding:.6rem 1.4rem;margin-right:.75rem;border-radius:6px;\
border:1px solid #888;cursor:pointer}.approve{background:#1f6feb;color:#fff;border-color:#1f6feb}\
.warn{color:#8a4b00}ul{padding-left:1.2rem}.err{color:#b00020}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        text(title)
    )
}

/// Adds the headers every page carries: no framing (clickjacking), no caching, no sniffing.
pub fn harden(response: Response) -> Response {
    harden_with_form_targets(response, &[])
}

/// As [`harden`], with extra `form-action` sources: browsers apply `form-action` to the
/// redirects that follow a form submission too, so the consent form must be allowed to end up
/// at TaskManager (approve) or at the client's redirect URI (deny).
pub fn harden_with_form_targets(mut response: Response, form_targets: &[String]) -> Response {
    let h = response.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let targets: String = form_targets
        .iter()
        .filter(|t| {
            t.bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        })
        .map(|t| format!(" {t}"))
        .collect();
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{targets}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An error page: shown instead of redirecting when the client or its redirect URI cannot be
/// trusted (RFC 6749 §4.1.2.1), or when the login cannot continue.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<h1 class=\"err\">{}</h1><div class=\"box\"><p>{}</p></div>\
         <p>You can close this window and start the sign-in again from your application.</p>",
        text(title),
        text(message)
    );
    harden((status, Html(page(title, &body))).into_response())
}

/// What the consent page shows.
pub struct Consent<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    /// Host of a URL `client_id` (a client ID metadata document): shown so the user can judge
    /// who published the application's description (draft-ietf-oauth-client-id-metadata-document
    /// §6, phishing).
    pub client_id_host: Option<&'a str>,
    pub redirect_uri: &'a str,
    pub redirect_host: &'a str,
    pub scopes: Vec<(&'a str, &'a str)>,
    pub resource: &'a str,
    pub request_id: &'a str,
    pub csrf: &'a str,
    pub action: &'a str,
    pub upstream_name: &'a str,
    /// Origins the form's redirects may reach (see [`harden_with_form_targets`]).
    pub form_targets: Vec<String>,
}

/// The consent page (MCP security best practices, confused deputy): who is asking, where the
/// result goes (host prominent), what for, with approve / deny.
pub fn consent_page(c: &Consent<'_>) -> Response {
    let scopes: String = c
        .scopes
        .iter()
        .map(|(s, d)| format!("<li><b>{}</b>: {}</li>", text(s), text(d)))
        .collect();
    let published_by = c.client_id_host.map_or_else(String::new, |h| {
        format!(
            "<p>This application is identified by a web address; its description is published \
             by:</p><p class=\"host\">{}</p><p class=\"warn\">Only continue if you trust this \
             site.</p>",
            text(h)
        )
    });
    let body = format!(
        "<h1>Allow <span>{name}</span> to access your {upstream} data?</h1>\
         <div class=\"box\"><p>After you approve and sign in, you will be sent to:</p>\
         <p class=\"host\">{host}</p><p class=\"uri\">{uri}</p>\
         <p class=\"warn\">Only continue if you started this sign-in and you recognise this \
         address.</p></div>\
         <div class=\"box\"><p>The application <b>{name}</b> <span class=\"uri\">(client id \
         {client_id})</span> asks for:</p><ul>{scopes}</ul>{published_by}\
         <p>on the MCP server <span class=\"uri\">{resource}</span>.</p></div>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"request_id\" value=\"{request_id}\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
         <button class=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        name = text(c.client_name),
        upstream = text(c.upstream_name),
        host = text(c.redirect_host),
        uri = text(c.redirect_uri),
        client_id = text(c.client_id),
        resource = text(c.resource),
        action = attr(c.action),
        request_id = attr(c.request_id),
        csrf = attr(c.csrf),
    );
    harden_with_form_targets(
        Html(page("Authorize access", &body)).into_response(),
        &c.form_targets,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_values_are_escaped() {
        let r = error_page(
            StatusCode::BAD_REQUEST,
            "Bad <client>",
            "<script>x</script>",
        );
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body = page("t", text("<script>").as_ref());
        assert!(!body.contains("<script>"));
    }
}
