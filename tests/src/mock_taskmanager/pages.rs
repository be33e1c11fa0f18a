//! Plain HTML pages: readable, usable without JavaScript, every interpolated value escaped.

use super::users::User;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

/// What the consent page shows and carries.
pub struct ConsentView<'a> {
    pub username: &'a str,
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: Vec<&'a str>,
    pub request_id: &'a str,
    pub csrf: &'a str,
}

/// A complete page with the headers every page gets: no caching, no framing.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · TaskManager</title>\
         <style>body{{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}}\
         label{{display:block;margin:.5em 0}}.error{{color:#a00}}code{{word-break:break-all}}</style>\
         </head><body>\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = text(title),
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

/// `/`: who is signed in.
pub fn home(user: Option<&User>) -> Response {
    let body = match user {
        Some(u) => format!(
            "<p>Signed in as <strong>{}</strong> ({}).</p>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form>",
            text(u.name),
            text(u.username),
        ),
        None => "<p>You are not signed in. <a href=\"/login\">Sign in</a>.</p>".to_owned(),
    };
    page(StatusCode::OK, "TaskManager", &body)
}

/// The login form; `message` explains a failed attempt.
pub fn login(next: &str, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", text(m)))
        .unwrap_or_default();
    let body = format!(
        "{message}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>Username <input name=\"username\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        next = attr(next),
    );
    page(StatusCode::OK, "Sign in", &body)
}

/// TaskManager's own consent page for an OAuth client.
pub fn consent(v: &ConsentView<'_>) -> Response {
    let scopes: String = v
        .scopes
        .iter()
        .map(|s| {
            format!(
                "<li><code>{}</code> — {}</li>",
                text(s),
                text(scope_meaning(s))
            )
        })
        .collect();
    let body = format!(
        "<p>Signed in as <strong>{user}</strong>.</p>\
         <p><strong>{name}</strong> (client <code>{id}</code>) wants to access your TaskManager account.</p>\
         <p>It will be sent back to <code>{redirect}</code>.</p>\
         <p>It asks for:</p><ul>{scopes}</ul>\
         <form method=\"post\" action=\"/api/oauth/authorize/decision\">\
         <input type=\"hidden\" name=\"request_id\" value=\"{request_id}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">Approve</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button></form>",
        user = text(v.username),
        name = text(v.client_name),
        id = text(v.client_id),
        redirect = text(v.redirect_uri),
        request_id = attr(v.request_id),
        csrf = attr(v.csrf),
    );
    page(StatusCode::OK, "Authorize access", &body)
}

fn scope_meaning(scope: &str) -> &'static str {
    match scope {
        "openid" => "know who you are (name and email)",
        "read" => "read your tasks",
        "write" => "create, change and delete your tasks",
        _ => "unknown permission",
    }
}

/// An error page, for failures that must not be redirected (unknown client, bad redirect URI).
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!("<p class=\"error\">{}</p>", text(message)),
    )
}
