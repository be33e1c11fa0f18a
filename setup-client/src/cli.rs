//! Command-line flags, with the environment fallbacks of the TaskManager integration document,
//! and their validation into a checked [`Config`].

use crate::Kind;
use crate::taskmanager::{BaseUrl, CookieError, NewClient, SessionCookie, Timeouts, UrlError};
use shared::Scope;
use shared::redirect_uri::{PrivateUseSchemes, RedirectUriError, check_registrable};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// How long to wait for a TCP (and TLS) connection, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The grant types the auth server uses at TaskManager's token endpoint.
const GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];

/// The longest cookie accepted on standard input; a session cookie is far shorter.
const MAX_STDIN_COOKIE: u64 = 16 * 1024;

// No `Debug`: the session cookie is a credential.
#[derive(clap::Parser)]
#[command(
    name = "setup-client",
    version,
    about = "Registers the MCP auth server's OAuth client at TaskManager, or lists the registered clients.",
    long_about = "Registers the MCP auth server's OAuth client at TaskManager, or lists the registered \
clients, using the session cookie of a TaskManager administrator.\n\n\
On success the credentials are printed once, on stdout, as env lines for the auth server \
(TASKMANAGER_BASE_URL, TASKMANAGER_CLIENT_ID, TASKMANAGER_CLIENT_SECRET); a summary goes to stderr. \
TaskManager does not show the client secret again.",
    after_help = "Examples:\n  \
setup-client --taskmanager-url http://localhost:4321 --session-cookie \"VALUE\" --client-name \"MCP Server\"\n  \
setup-client --taskmanager-url http://localhost:4321 --session-cookie \"VALUE\" --list-only\n  \
setup-client --taskmanager-url http://localhost:4321 --output auth-server.env && set -a && . ./auth-server.env && set +a\n\n\
The session cookie: log into TaskManager as an administrator in a browser, open the developer tools \
(Application or Storage tab, Cookies) and copy the value of the `session` cookie.\n\n\
Exit codes: 0 ok, 2 bad arguments or invalid URL, 3 TaskManager unreachable or timed out, \
4 session cookie missing, expired or not an administrator's, 5 unexpected answer from TaskManager, \
6 local I/O error."
)]
pub struct Args {
    /// Base URL of TaskManager.
    #[arg(long, env = "TASKMANAGER_BASE_URL", value_name = "URL")]
    pub taskmanager_url: String,

    /// Session cookie of a TaskManager administrator: the bare value (sent as cookie
    /// `--cookie-name`), `name=value`, or `-` to read it from stdin. Prefer the environment
    /// variable or stdin: command lines are visible to other users of this machine.
    #[arg(
        long,
        env = "TASKMANAGER_SESSION_COOKIE",
        hide_env_values = true,
        // Random cookie values may start with `-`.
        allow_hyphen_values = true,
        value_name = "COOKIE"
    )]
    pub session_cookie: Option<String>,

    /// Name of TaskManager's session cookie, used when --session-cookie is a bare value.
    #[arg(long, default_value = "session", value_name = "NAME")]
    pub cookie_name: String,

    /// List the registered clients (never their secrets) instead of registering one.
    #[arg(long)]
    pub list_only: bool,

    /// Name of the client to register, shown to users on TaskManager's consent page.
    #[arg(long, default_value = "MCP Server", value_name = "NAME")]
    pub client_name: String,

    /// Public URL of the auth server; the client's redirect URI is this URL + /oauth/callback.
    #[arg(
        long,
        default_value = "http://localhost:9000",
        value_name = "URL",
        conflicts_with = "redirect_uri"
    )]
    pub auth_server_url: String,

    /// Redirect URI to register, instead of the one derived from --auth-server-url
    /// (repeatable).
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uri: Vec<String>,

    /// Scopes the client may request, separated by spaces or commas. TaskManager refuses the
    /// auth server any scope beyond these, and the auth server asks for its
    /// --upstream-scope (default "openid read write"; `openid` lets it learn the user from an
    /// id_token): register with --scopes "openid read write" unless it uses a userinfo endpoint.
    #[arg(
        long,
        env = "TASKMANAGER_UPSTREAM_SCOPE",
        default_value = "read write",
        value_name = "SCOPES"
    )]
    pub scopes: String,

    /// Path of TaskManager's clients API, relative to --taskmanager-url.
    #[arg(long, default_value = crate::taskmanager::CLIENTS_PATH, value_name = "PATH")]
    pub clients_path: String,

    /// Print JSON instead: the registered client (secret included), or the list of clients.
    #[arg(long)]
    pub json: bool,

    /// Write the env lines (or the JSON) to FILE, created with mode 0600, instead of stdout.
    #[arg(long, value_name = "FILE", conflicts_with = "list_only")]
    pub output: Option<PathBuf>,

    /// Replace the --output file if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,

    /// Seconds each request to TaskManager may take in all (connecting takes at most 5).
    #[arg(
        long,
        default_value_t = 15,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    pub timeout: u64,
}

/// Validated configuration of one run.
pub struct Config {
    pub base_url: BaseUrl,
    pub cookie: SessionCookie,
    pub timeouts: Timeouts,
    pub json: bool,
    pub mode: Mode,
}

/// What the run does.
pub enum Mode {
    /// `--list-only`.
    List,
    /// Register a client, printing its credentials to stdout or `output`.
    Register {
        request: NewClient,
        output: Option<OutputFile>,
    },
}

/// `--output FILE [--force]`.
pub struct OutputFile {
    pub path: PathBuf,
    pub force: bool,
}

/// A flag value that cannot be used. Messages never repeat the session cookie.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --taskmanager-url: {0}")]
    TaskManagerUrl(UrlError),
    #[error("invalid --clients-path {0:?}: it must start with `/`")]
    ClientsPath(String),
    #[error("invalid --auth-server-url: {0}")]
    AuthServerUrl(UrlError),
    #[error("invalid --auth-server-url: its callback {uri} cannot be registered: {reason}")]
    Callback {
        uri: String,
        reason: RedirectUriError,
    },
    #[error("invalid --redirect-uri {uri:?}: {reason}")]
    RedirectUri {
        uri: String,
        reason: RedirectUriError,
    },
    #[error("invalid --scopes: {0}")]
    Scopes(&'static str),
    #[error("invalid --client-name: {0}")]
    ClientName(&'static str),
    #[error(transparent)]
    Cookie(#[from] CookieError),
    #[error("cannot read the session cookie from standard input: {0}")]
    Stdin(std::io::Error),
}

impl ConfigError {
    /// A missing cookie is an authorization problem (4); an unreadable stdin is local I/O (6);
    /// everything else is a bad argument (2).
    pub fn kind(&self) -> Kind {
        match self {
            ConfigError::Cookie(e) => e.kind(),
            ConfigError::Stdin(_) => Kind::LocalIo,
            _ => Kind::Usage,
        }
    }
}

impl Args {
    /// Checks every flag; reads the cookie from stdin when it is `-`.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let base_url =
            BaseUrl::parse(&self.taskmanager_url, &self.clients_path).map_err(|e| match e {
                UrlError::ClientsPath => ConfigError::ClientsPath(self.clients_path.clone()),
                e => ConfigError::TaskManagerUrl(e),
            })?;
        let raw_cookie = match self.session_cookie.as_deref() {
            Some("-") => Some(read_stdin_cookie()?),
            other => other.map(str::to_owned),
        };
        let cookie = SessionCookie::parse(raw_cookie.as_deref(), &self.cookie_name)?;
        let total = Duration::from_secs(self.timeout);
        let timeouts = Timeouts {
            connect: CONNECT_TIMEOUT.min(total),
            total,
        };
        let mode = if self.list_only {
            Mode::List
        } else {
            let redirect_uris = redirect_uris(&self.auth_server_url, &self.redirect_uri)?;
            let scope = parse_scopes(&self.scopes)?;
            let name = check_client_name(&self.client_name)?;
            Mode::Register {
                request: NewClient {
                    name,
                    redirect_uris,
                    grant_types: GRANT_TYPES.iter().map(|g| (*g).to_owned()).collect(),
                    scope: scope.to_string(),
                },
                output: self.output.map(|path| OutputFile {
                    path,
                    force: self.force,
                }),
            }
        };
        Ok(Config {
            base_url,
            cookie,
            timeouts,
            json: self.json,
            mode,
        })
    }
}

fn read_stdin_cookie() -> Result<String, ConfigError> {
    let mut buf = String::new();
    std::io::stdin()
        .take(MAX_STDIN_COOKIE)
        .read_to_string(&mut buf)
        .map_err(ConfigError::Stdin)?;
    Ok(buf.trim().to_owned())
}

/// The redirect URIs to register: the `--redirect-uri` values in order without repeats, or
/// else the auth server's callback (shared::paths::CALLBACK under `--auth-server-url`).
pub fn redirect_uris(
    auth_server_url: &str,
    explicit: &[String],
) -> Result<Vec<String>, ConfigError> {
    if explicit.is_empty() {
        let base = BaseUrl::parse(auth_server_url, "/").map_err(ConfigError::AuthServerUrl)?;
        let uri = format!("{}{}", base.as_str(), shared::paths::CALLBACK);
        return match check_registrable(&uri, PrivateUseSchemes::Refused) {
            Ok(_) => Ok(vec![uri]),
            Err(reason) => Err(ConfigError::Callback { uri, reason }),
        };
    }
    let mut uris: Vec<String> = Vec::with_capacity(explicit.len());
    for uri in explicit {
        let uri = uri.trim();
        check_registrable(uri, PrivateUseSchemes::Refused).map_err(|reason| {
            ConfigError::RedirectUri {
                uri: uri.to_owned(),
                reason,
            }
        })?;
        if !uris.iter().any(|u| u == uri) {
            uris.push(uri.to_owned());
        }
    }
    Ok(uris)
}

/// Parses `--scopes` (spaces or commas); an empty set is refused.
pub fn parse_scopes(s: &str) -> Result<Scope, ConfigError> {
    let scope = Scope::parse_list(s).map_err(|_| {
        ConfigError::Scopes("a scope contains a character RFC 6749 section 3.3 does not allow")
    })?;
    if scope.is_empty() {
        return Err(ConfigError::Scopes(
            "no scope given; the default is \"read write\"",
        ));
    }
    Ok(scope)
}

fn check_client_name(name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ConfigError::ClientName("it is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(ConfigError::ClientName("it contains a control character"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["setup-client", "--taskmanager-url", "http://localhost:4321"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    fn register_request(extra: &[&str]) -> NewClient {
        let mut a = args(extra);
        a.session_cookie = Some("abc".into());
        match a.into_config().unwrap().mode {
            Mode::Register { request, .. } => request,
            Mode::List => panic!("expected registration"),
        }
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_register_the_local_auth_server_callback() {
        let r = register_request(&[]);
        assert_eq!(r.name, "MCP Server");
        assert_eq!(r.redirect_uris, ["http://localhost:9000/oauth/callback"]);
        assert_eq!(r.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(r.scope, "read write");
    }

    #[test]
    fn callback_follows_the_auth_server_url_and_its_path() {
        let r = register_request(&["--auth-server-url", "https://auth.example.com/"]);
        assert_eq!(r.redirect_uris, ["https://auth.example.com/oauth/callback"]);
        let r = register_request(&["--auth-server-url", "https://example.com/mcp-auth"]);
        assert_eq!(
            r.redirect_uris,
            ["https://example.com/mcp-auth/oauth/callback"]
        );
    }

    #[test]
    fn explicit_redirect_uris_are_kept_in_order_without_repeats() {
        let r = register_request(&[
            "--redirect-uri",
            "http://127.0.0.1:9000/oauth/callback",
            "--redirect-uri",
            "http://localhost:9000/oauth/callback",
            "--redirect-uri",
            "http://127.0.0.1:9000/oauth/callback",
        ]);
        assert_eq!(
            r.redirect_uris,
            [
                "http://127.0.0.1:9000/oauth/callback",
                "http://localhost:9000/oauth/callback"
            ]
        );
    }

    #[test]
    fn redirect_uri_and_auth_server_url_conflict() {
        let e = Args::try_parse_from([
            "setup-client",
            "--taskmanager-url",
            "http://x",
            "--auth-server-url",
            "http://localhost:9000",
            "--redirect-uri",
            "http://localhost:9000/cb",
        ]);
        assert_eq!(e.err().map(|e| e.exit_code()), Some(2));
    }

    #[test]
    fn bad_redirect_uris_and_auth_server_urls_are_usage_errors() {
        for extra in [
            &["--redirect-uri", "http://auth.example.com/cb"][..],
            &["--redirect-uri", "not a uri"],
            &["--redirect-uri", "https://a.example/cb#frag"],
            &["--auth-server-url", "http://auth.example.com"],
            &["--auth-server-url", "ftp://localhost"],
        ] {
            let mut a = args(extra);
            a.session_cookie = Some("abc".into());
            let e = a.into_config().err().unwrap();
            assert_eq!(e.kind(), Kind::Usage, "{extra:?}: {e}");
        }
    }

    #[test]
    fn scopes_accept_spaces_and_commas_and_refuse_nothing_or_junk() {
        assert_eq!(
            parse_scopes("openid, read,write").unwrap().to_string(),
            "openid read write"
        );
        assert!(matches!(parse_scopes("  "), Err(ConfigError::Scopes(_))));
        assert!(matches!(
            parse_scopes("read\"x"),
            Err(ConfigError::Scopes(_))
        ));
    }

    #[test]
    fn client_name_must_be_printable_and_not_blank() {
        assert_eq!(check_client_name("  MCP  ").unwrap(), "MCP");
        assert!(check_client_name(" ").is_err());
        assert!(check_client_name("a\u{1b}[31m").is_err());
    }

    #[test]
    fn cookie_values_may_start_with_a_hyphen() {
        let a = args(&["--session-cookie", "-Xb3_k", "--list-only"]);
        assert_eq!(a.session_cookie.as_deref(), Some("-Xb3_k"));
        assert!(a.list_only);
    }

    #[test]
    fn missing_cookie_is_an_authorization_failure() {
        let e = args(&[]).into_config().err().unwrap();
        assert_eq!(e.kind(), Kind::NotAuthorized);
    }

    #[test]
    fn timeout_bounds_the_connect_timeout() {
        let mut a = args(&["--timeout", "2"]);
        a.session_cookie = Some("abc".into());
        let t = a.into_config().unwrap().timeouts;
        assert_eq!(
            (t.connect, t.total),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        let mut a = args(&[]);
        a.session_cookie = Some("abc".into());
        let t = a.into_config().unwrap().timeouts;
        assert_eq!(
            (t.connect, t.total),
            (Duration::from_secs(5), Duration::from_secs(15))
        );
        assert!(
            Args::try_parse_from(["setup-client", "--taskmanager-url", "x", "--timeout", "0"])
                .is_err()
        );
    }

    #[test]
    fn output_is_refused_with_list_only_and_force_needs_output() {
        for argv in [&["--list-only", "--output", "f"][..], &["--force"]] {
            let mut v = vec!["setup-client", "--taskmanager-url", "x"];
            v.extend_from_slice(argv);
            assert!(Args::try_parse_from(v).is_err(), "{argv:?}");
        }
    }
}
