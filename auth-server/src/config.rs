//! Command line and environment (DESIGN §6). Every flag has an environment fallback; the
//! integration document's names (`TASKMANAGER_*`, `JWT_ISSUER`) keep working. `validate()`
//! turns the raw flags into checked [`Settings`].

use crate::tokens::keys::{KeyPolicy, SigningAlg};
use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::{Scope, Secret};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// OAuth 2.1 authorization server for MCP clients, federating TaskManager's login.
#[derive(Debug, Parser)]
#[command(name = "auth-server", version, about, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Signing-key management.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Checks the configuration and exits (0 when it is usable).
    ValidateConfig,
}

/// `auth-server keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Adds a new signing key; the previous one stays in the JWKS until its tokens expire.
    Rotate,
    /// Lists the signing keys.
    List,
}

/// How we authenticate to TaskManager's token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpstreamAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

/// Who may use dynamic client registration (RFC 7591 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistrationPolicy {
    /// Anyone (rate limited).
    Open,
    /// Only with `Authorization: Bearer <initial access token>`.
    InitialAccessToken,
    /// Registration is refused.
    Closed,
}

/// Flags of the server itself.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, env = "MCP_AS_PORT", default_value_t = 9000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "MCP_AS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Public URL of this server: the `issuer` (default http://HOST:PORT).
    #[arg(long, env = "JWT_ISSUER")]
    pub issuer: Option<String>,
    /// TaskManager's base URL.
    #[arg(long, env = "TASKMANAGER_BASE_URL")]
    pub taskmanager_url: Option<String>,
    /// Our client id at TaskManager.
    #[arg(long, env = "TASKMANAGER_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Our client secret at TaskManager.
    #[arg(long, env = "TASKMANAGER_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Scope we ask TaskManager for (`openid` lets us learn the user from an id_token).
    #[arg(
        long,
        env = "TASKMANAGER_UPSTREAM_SCOPE",
        default_value = "openid read write"
    )]
    pub upstream_scope: String,
    /// MCP scopes offered to MCP clients (space or comma separated).
    #[arg(long, env = "TASKMANAGER_MCP_SCOPE", default_value = "read,write")]
    pub mcp_scope: String,
    /// TaskManager's authorization endpoint path (or absolute URL).
    #[arg(
        long,
        env = "TASKMANAGER_AUTHORIZE_PATH",
        default_value = "/api/oauth/authorize"
    )]
    pub upstream_authorize_path: String,
    /// TaskManager's token endpoint path (or absolute URL).
    #[arg(
        long,
        env = "TASKMANAGER_TOKEN_PATH",
        default_value = "/api/oauth/token"
    )]
    pub upstream_token_path: String,
    /// TaskManager's JWKS path (or absolute URL), to verify its id_tokens.
    #[arg(long, env = "TASKMANAGER_JWKS_PATH", default_value = "/api/oauth/jwks")]
    pub upstream_jwks_path: String,
    /// TaskManager's userinfo path (or absolute URL); used when no id_token names the user.
    #[arg(long, env = "TASKMANAGER_USERINFO_PATH")]
    pub upstream_userinfo_path: Option<String>,
    /// Expected `iss` of TaskManager's id_tokens (default: the TaskManager URL).
    #[arg(long, env = "TASKMANAGER_ISSUER")]
    pub upstream_issuer: Option<String>,
    /// Client authentication at TaskManager's token endpoint.
    #[arg(
        long,
        env = "TASKMANAGER_TOKEN_AUTH_METHOD",
        value_enum,
        default_value = "client-secret-basic"
    )]
    pub upstream_auth_method: UpstreamAuthMethod,
    /// Timeout of each call to TaskManager, in seconds.
    #[arg(long, env = "TASKMANAGER_TIMEOUT_SECS", default_value_t = 10)]
    pub upstream_timeout_secs: u64,
    /// Canonical URL of the protected MCP resource (RFC 8707 `resource`).
    #[arg(
        long,
        env = "MCP_RESOURCE_URL",
        default_value = "http://127.0.0.1:8001/mcp"
    )]
    pub resource: String,
    /// Resource server's client id, for introspection and token exchange.
    #[arg(long, env = "MCP_RS_CLIENT_ID")]
    pub rs_client_id: Option<String>,
    /// Resource server's client secret.
    #[arg(long, env = "MCP_RS_CLIENT_SECRET", hide_env_values = true)]
    pub rs_client_secret: Option<String>,
    /// Directory of the embedded store and the generated vault key.
    #[arg(long, env = "MCP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// AES-256 key of the vault (64 hex characters or base64); generated into the data dir if absent.
    #[arg(long, env = "MCP_VAULT_KEY", hide_env_values = true)]
    pub vault_key: Option<String>,
    /// Algorithm of the signing keys the server generates.
    #[arg(long, env = "MCP_SIGNING_ALG", value_enum, default_value = "EdDSA")]
    pub signing_alg: SigningAlg,
    /// Pins the signing key: a PEM private key (Ed25519, P-256 or RSA ≥ 2048 bits), or the
    /// path of a file holding one. Replaces generated keys; rotate by changing it.
    #[arg(long, env = "JWT_PRIVATE_KEY", hide_env_values = true)]
    pub jwt_private_key: Option<String>,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "MCP_ACCESS_TOKEN_TTL", default_value_t = 3600)]
    pub access_token_ttl: u64,
    /// Refresh-token (family) lifetime in seconds.
    #[arg(long, env = "MCP_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl: u64,
    /// Authorization-code lifetime in seconds.
    #[arg(long, env = "MCP_CODE_TTL", default_value_t = 60)]
    pub code_ttl: u64,
    /// Window in which a retried refresh gets the same successor, in seconds.
    #[arg(long, env = "MCP_REFRESH_GRACE", default_value_t = 30)]
    pub refresh_grace_secs: u64,
    /// Refresh TaskManager's token when it expires within this many seconds.
    #[arg(long, env = "MCP_UPSTREAM_REFRESH_MARGIN", default_value_t = 300)]
    pub upstream_refresh_margin_secs: u64,
    /// How long a login (consent, TaskManager round trip) may take, in seconds.
    #[arg(long, env = "MCP_LOGIN_TTL", default_value_t = 600)]
    pub login_ttl: u64,
    /// Who may register clients dynamically.
    #[arg(long, env = "MCP_REGISTRATION", value_enum, default_value = "open")]
    pub registration: RegistrationPolicy,
    /// Initial access token for `--registration initial-access-token`.
    #[arg(long, env = "MCP_INITIAL_ACCESS_TOKEN", hide_env_values = true)]
    pub initial_access_token: Option<String>,
    /// Also accept reverse-domain private-use scheme redirect URIs such as
    /// `com.example.app:/cb` (RFC 8252 §7.1) at registration, for desktop clients that use them.
    #[arg(
        long,
        env = "MCP_ALLOW_PRIVATE_USE_REDIRECT_SCHEMES",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_private_use_redirect_schemes: bool,
    /// Registrations allowed per client IP per minute.
    #[arg(long, env = "MCP_REGISTRATION_RATE", default_value_t = 30)]
    pub registration_rate_per_minute: u32,
    /// A registered client that never obtains a token is deleted after this many seconds.
    #[arg(long, env = "MCP_UNUSED_CLIENT_TTL", default_value_t = 7 * 24 * 3600)]
    pub unused_client_ttl: u64,
    /// Seconds between sweeps of expired records.
    #[arg(long, env = "MCP_SWEEP_INTERVAL", default_value_t = 60)]
    pub sweep_interval_secs: u64,
    /// Tests only: accept `http://127.0.0.1/...` client metadata document URLs. Hidden, and
    /// loudly logged at startup, because it opens the SSRF guard for loopback.
    #[arg(
        long = "cimd-insecure-allow-loopback-http",
        env = "MCP_CIMD_INSECURE_ALLOW_LOOPBACK",
        hide = true,
        hide_env = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub cimd_insecure_allow_loopback_http: bool,
}

/// A configuration error, naming the flag to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How to reach TaskManager.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub scope: String,
    pub authorize_url: Url,
    pub token_url: Url,
    pub jwks_url: Url,
    pub userinfo_url: Option<Url>,
    pub issuer: String,
    pub auth_method: UpstreamAuthMethod,
    pub timeout: Duration,
}

/// Checked settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub upstream: UpstreamSettings,
    pub mcp_scopes: Scope,
    /// Canonical form (see `shared::resource`).
    pub resource: String,
    pub rs_client: Option<(String, Secret<String>)>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub code_ttl: Duration,
    pub refresh_grace: Duration,
    pub upstream_refresh_margin: Duration,
    pub login_ttl: Duration,
    pub registration: RegistrationPolicy,
    pub initial_access_token: Option<Secret<String>>,
    pub registration_rate_per_minute: u32,
    pub private_use_redirects: shared::redirect_uri::PrivateUseSchemes,
    pub unused_client_ttl: Duration,
    /// Tests only: client metadata documents may be fetched over http from 127.0.0.1.
    pub cimd_allow_loopback_http: bool,
    pub signing: KeyPolicy,
}

fn parse_url(flag: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value)
        .map_err(|e| ConfigError(format!("{flag}: {value:?} is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError(format!(
            "{flag}: {value:?} must be an http(s) URL"
        )));
    }
    Ok(url)
}

/// A path relative to the base URL, or an absolute URL.
fn endpoint(base: &Url, flag: &str, path: &str) -> Result<Url, ConfigError> {
    if path.starts_with("http://") || path.starts_with("https://") {
        return parse_url(flag, path);
    }
    let mut url = base.clone();
    let base_path = base.path().trim_end_matches('/');
    url.set_path(&format!("{base_path}/{}", path.trim_start_matches('/')));
    Ok(url)
}

impl ServeArgs {
    /// Checks the flags; `bound_port` replaces port 0 in the default issuer.
    pub fn validate(&self, bound_port: u16) -> Result<Settings, ConfigError> {
        let missing =
            |flag: &str, env: &str| ConfigError(format!("{flag} is required (or set {env})"));
        let tm = self
            .taskmanager_url
            .as_deref()
            .ok_or_else(|| missing("--taskmanager-url", "TASKMANAGER_BASE_URL"))?;
        let base_url = parse_url("--taskmanager-url", tm)?;
        let client_id = self
            .client_id
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("--client-id", "TASKMANAGER_CLIENT_ID"))?;
        let client_secret = self
            .client_secret
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("--client-secret", "TASKMANAGER_CLIENT_SECRET"))?;
        let issuer = match &self.issuer {
            Some(i) => parse_url("--issuer", i)?
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            None => format!("http://{}:{bound_port}", self.host),
        };
        let resource = shared::resource::canonicalize(&self.resource)
            .map_err(|e| ConfigError(format!("--resource: {e}")))?;
        let mcp_scopes = Scope::parse_list(&self.mcp_scope)
            .map_err(|e| ConfigError(format!("--mcp-scope: {e}")))?;
        if mcp_scopes.is_empty() {
            return Err(ConfigError(
                "--mcp-scope must name at least one scope".into(),
            ));
        }
        let rs_client = match (&self.rs_client_id, &self.rs_client_secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Some((id.clone(), Secret::new(secret.clone())))
            }
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "--rs-client-id and --rs-client-secret go together".into(),
                ));
            }
        };
        let initial_access_token = self.initial_access_token.clone().map(Secret::new);
        if self.registration == RegistrationPolicy::InitialAccessToken
            && initial_access_token.is_none()
        {
            return Err(ConfigError(
                "--registration initial-access-token needs --initial-access-token".into(),
            ));
        }
        let upstream = UpstreamSettings {
            authorize_url: endpoint(
                &base_url,
                "--upstream-authorize-path",
                &self.upstream_authorize_path,
            )?,
            token_url: endpoint(
                &base_url,
                "--upstream-token-path",
                &self.upstream_token_path,
            )?,
            jwks_url: endpoint(&base_url, "--upstream-jwks-path", &self.upstream_jwks_path)?,
            userinfo_url: self
                .upstream_userinfo_path
                .as_deref()
                .map(|p| endpoint(&base_url, "--upstream-userinfo-path", p))
                .transpose()?,
            issuer: self
                .upstream_issuer
                .clone()
                .unwrap_or_else(|| base_url.as_str().trim_end_matches('/').to_owned()),
            client_id,
            client_secret: Secret::new(client_secret),
            scope: self.upstream_scope.clone(),
            auth_method: self.upstream_auth_method,
            timeout: Duration::from_secs(self.upstream_timeout_secs.max(1)),
            base_url,
        };
        Ok(Settings {
            issuer,
            upstream,
            mcp_scopes,
            resource,
            rs_client,
            access_token_ttl: Duration::from_secs(self.access_token_ttl.max(1)),
            refresh_token_ttl: Duration::from_secs(self.refresh_token_ttl.max(1)),
            code_ttl: Duration::from_secs(self.code_ttl.max(1)),
            refresh_grace: Duration::from_secs(self.refresh_grace_secs),
            upstream_refresh_margin: Duration::from_secs(self.upstream_refresh_margin_secs),
            login_ttl: Duration::from_secs(self.login_ttl.max(10)),
            registration: self.registration,
            initial_access_token,
            registration_rate_per_minute: self.registration_rate_per_minute,
            private_use_redirects: if self.allow_private_use_redirect_schemes {
                shared::redirect_uri::PrivateUseSchemes::Allowed
            } else {
                shared::redirect_uri::PrivateUseSchemes::Refused
            },
            unused_client_ttl: Duration::from_secs(self.unused_client_ttl.max(60)),
            cimd_allow_loopback_http: self.cimd_insecure_allow_loopback_http,
            signing: self.key_policy()?,
        })
    }

    /// Where the signing key comes from. `--jwt-private-key` holds PEM text (environment
    /// variables often carry its line breaks as a literal `\n`) or the path of a PEM file.
    pub fn key_policy(&self) -> Result<KeyPolicy, ConfigError> {
        let pinned = match self.jwt_private_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) if v.starts_with("-----BEGIN") => Some(v.replace("\\n", "\n")),
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!(
                    "--jwt-private-key / JWT_PRIVATE_KEY: neither PEM text nor a readable \
                     file ({path:?}: {e})"
                ))
            })?),
        };
        let policy = KeyPolicy {
            alg: self.signing_alg,
            pinned: pinned.map(Secret::new),
            keep_previous: Duration::from_secs(self.access_token_ttl.max(1)),
        };
        // Parse now, so a bad key is a configuration error at startup, named by its flag.
        if let Some(pem) = &policy.pinned {
            crate::tokens::keys::check_pem(pem.expose()).map_err(|e| ConfigError(e.to_string()))?;
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec![
            "auth-server",
            "--taskmanager-url",
            "http://127.0.0.1:4321",
            "--client-id",
            "id",
            "--client-secret",
            "s",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn the_documented_command_line_parses() {
        let cli = Cli::try_parse_from([
            "auth-server",
            "--port",
            "9000",
            "--issuer",
            "http://127.0.0.1:9000",
            "--taskmanager-url",
            "http://127.0.0.1:4321",
            "--client-id",
            "ID",
            "--client-secret",
            "SECRET",
            "--upstream-scope",
            "openid read write",
            "--resource",
            "http://127.0.0.1:8001/mcp",
            "--rs-client-id",
            "RS_ID",
            "--rs-client-secret",
            "RS_SECRET",
            "--data-dir",
            "./data",
        ])
        .unwrap();
        let s = cli.serve.validate(9000).unwrap();
        assert_eq!(s.issuer, "http://127.0.0.1:9000");
        assert_eq!(
            s.upstream.token_url.as_str(),
            "http://127.0.0.1:4321/api/oauth/token"
        );
        assert_eq!(s.resource, "http://127.0.0.1:8001/mcp");
        assert_eq!(s.mcp_scopes.to_string(), "read write");
        assert!(
            !format!("{s:?}").contains("SECRET"),
            "secrets must not be printed"
        );
    }

    #[test]
    fn missing_upstream_names_the_flag() {
        let a = Cli::try_parse_from(["auth-server", "--client-id", "x"])
            .unwrap()
            .serve;
        let err = a.validate(1).unwrap_err().to_string();
        assert!(err.contains("--taskmanager-url"), "{err}");
    }

    #[test]
    fn endpoints_may_be_absolute() {
        let s = args(&["--upstream-token-path", "https://idp.test/token"])
            .validate(1)
            .unwrap();
        assert_eq!(s.upstream.token_url.as_str(), "https://idp.test/token");
    }

    #[test]
    fn cimd_loopback_flag_is_hidden_and_off_by_default() {
        assert!(!args(&[]).validate(1).unwrap().cimd_allow_loopback_http);
        let on = args(&["--cimd-insecure-allow-loopback-http"]);
        assert!(on.validate(1).unwrap().cimd_allow_loopback_http);
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(
            !help.contains("cimd"),
            "the test-only flag must not be advertised"
        );
    }

    #[test]
    fn default_issuer_uses_bound_port() {
        assert_eq!(
            args(&[]).validate(4567).unwrap().issuer,
            "http://127.0.0.1:4567"
        );
    }
}
