//! What the CLI prints: env lines for the auth server, the table or JSON of clients, the
//! summaries on stderr, and the `--output` file (mode 0600, never silently overwritten).

use crate::taskmanager::{BaseUrl, ClientInfo, RegisteredClient};
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Env variable names the auth server reads (DESIGN.md §6).
const BASE_URL_VAR: &str = "TASKMANAGER_BASE_URL";
const CLIENT_ID_VAR: &str = "TASKMANAGER_CLIENT_ID";
const CLIENT_SECRET_VAR: &str = "TASKMANAGER_CLIENT_SECRET";

/// A local failure to print or write. Messages never contain the client secret.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "registered client {client_id} but cannot write {}: {source}; delete that client in \
         TaskManager and run again",
        path.display()
    )]
    Write {
        path: PathBuf,
        client_id: String,
        source: io::Error,
    },
    #[error("cannot write to standard output: {0}")]
    Stdout(io::Error),
    #[error(
        "registered client {client_id} but cannot print its credentials: {source}; delete that \
         client in TaskManager and run again"
    )]
    StdoutAfterRegistration {
        client_id: String,
        source: io::Error,
    },
    #[error("cannot format the answer as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
}

impl OutputError {
    /// Names the client that exists at TaskManager although its secret was not delivered.
    pub fn after_registration(self, client: &RegisteredClient) -> Self {
        match self {
            OutputError::Stdout(source) => OutputError::StdoutAfterRegistration {
                client_id: client.info.client_id.clone(),
                source,
            },
            other => other,
        }
    }
}

/// Where the credentials went.
pub enum Destination {
    Stdout,
    File(PathBuf),
}

/// Writes all of `text` to stdout.
pub fn stdout(text: &str) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(OutputError::Stdout)
}

/// Writes `text` to stderr; a closed stderr is no reason to fail.
pub fn stderr(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// Quotes a value for POSIX shells when it needs it; plain values stay as they are, so the
/// lines also work as `docker --env-file` or systemd `EnvironmentFile` lines.
pub fn shell_quote(value: &str) -> Cow<'_, str> {
    // No `~` (tilde expansion after `=`), `$`, quotes, spaces, globs or separators.
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("'{}'", value.replace('\'', r"'\''")))
    }
}

/// `TASKMANAGER_BASE_URL=…`, `TASKMANAGER_CLIENT_ID=…`, `TASKMANAGER_CLIENT_SECRET=…`.
pub fn env_lines(base: &BaseUrl, client: &RegisteredClient) -> String {
    format!(
        "{BASE_URL_VAR}={}\n{CLIENT_ID_VAR}={}\n{CLIENT_SECRET_VAR}={}\n",
        shell_quote(base.as_str()),
        shell_quote(&client.info.client_id),
        shell_quote(client.client_secret.expose()),
    )
}

/// The registered client, secret included, as pretty JSON.
pub fn client_json(client: &RegisteredClient) -> Result<String, OutputError> {
    Ok(serde_json::to_string_pretty(client)? + "\n")
}

/// The listed clients as pretty JSON (their type has no secret field).
pub fn clients_json(clients: &[ClientInfo]) -> Result<String, OutputError> {
    Ok(serde_json::to_string_pretty(clients)? + "\n")
}

/// A text table of clients: id, name, redirect URIs, created. Empty when there are none.
pub fn clients_table(clients: &[ClientInfo]) -> String {
    if clients.is_empty() {
        return String::new();
    }
    let header = ["CLIENT ID", "NAME", "REDIRECT URIS", "CREATED"].map(str::to_owned);
    let rows: Vec<[String; 4]> = clients
        .iter()
        .map(|c| {
            [
                cell(&c.client_id),
                cell(&c.name),
                cell(&c.redirect_uris.join(", ")),
                cell(c.created_at.as_deref().unwrap_or("-")),
            ]
        })
        .collect();
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, text) in widths.iter_mut().zip(row) {
            *w = (*w).max(text.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (text, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(text);
            line.extend(std::iter::repeat_n(' ', w - text.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table cell: server-supplied text with control characters (which could forge terminal
/// output) replaced, and empty text shown as `-`.
fn cell(text: &str) -> String {
    if text.is_empty() {
        return "-".to_owned();
    }
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The stderr line after `--list-only`.
pub fn list_summary(base: &BaseUrl, count: usize) -> String {
    match count {
        0 => format!("No OAuth clients are registered at TaskManager {base}.\n"),
        1 => format!("1 OAuth client is registered at TaskManager {base}.\n"),
        n => format!("{n} OAuth clients are registered at TaskManager {base}.\n"),
    }
}

/// The stderr summary after a registration. Never contains the secret.
pub fn register_summary(
    base: &BaseUrl,
    client: &RegisteredClient,
    destination: &Destination,
    json: bool,
) -> String {
    let info = &client.info;
    let scope = info.scope.as_deref().unwrap_or("-");
    let mut out = format!(
        "Registered OAuth client {:?} at TaskManager {base}: client_id {}, redirect URIs {}, \
         scopes {:?}.\n",
        cell(&info.name),
        cell(&info.client_id),
        cell(&info.redirect_uris.join(", ")),
        cell(scope),
    );
    let what = if json {
        "The client (secret included) as JSON is"
    } else {
        "The env lines are"
    };
    match destination {
        Destination::Stdout => out.push_str(&format!(
            "{what} on stdout; TaskManager will not show the secret again, so store it now.\n"
        )),
        Destination::File(path) => {
            out.push_str(&format!(
                "{what} in {} (mode 0600); TaskManager will not show the secret again.\n",
                path.display()
            ));
            if !json {
                out.push_str(&format!(
                    "Load them for the auth server with: set -a; . {}; set +a\n",
                    shell_quote(&path.display().to_string())
                ));
            }
        }
    }
    if !scope.split(' ').any(|s| s == "openid") {
        out.push_str(
            "Note: without the openid scope the auth server cannot learn the user from an \
             id_token, and TaskManager refuses its default request for \"openid read write\"; \
             register with --scopes \"openid read write\" unless the auth server uses \
             --upstream-userinfo-path and a narrower --upstream-scope.\n",
        );
    }
    out
}

/// The `--output` file, claimed before registering and removed again unless committed.
///
/// Without `--force` the file itself is created exclusively (`O_CREAT|O_EXCL`, mode 0600), so
/// an existing file or symlink is never touched. With `--force` a fresh 0600 file beside it is
/// written and renamed over it, so the result has mode 0600 whatever the old file had.
pub struct PendingFile {
    target: PathBuf,
    /// The file actually written: `target`, or the temporary file renamed over it.
    written: PathBuf,
    file: Option<File>,
    committed: bool,
}

impl PendingFile {
    /// Creates the file (or, with `force`, its temporary sibling) with mode 0600.
    pub fn create(target: &Path, force: bool) -> Result<Self, OutputError> {
        let create_error = |source| OutputError::Create {
            path: target.to_owned(),
            source,
        };
        let Some(name) = target.file_name() else {
            return Err(create_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name",
            )));
        };
        let written = if force {
            if target.is_dir() {
                return Err(create_error(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "it is a directory",
                )));
            }
            let mut temp = std::ffi::OsString::from(".");
            temp.push(name);
            temp.push(format!(".{}.tmp", std::process::id()));
            target.with_file_name(temp)
        } else {
            target.to_owned()
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&written)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists && !force {
                    OutputError::Exists(target.to_owned())
                } else {
                    create_error(source)
                }
            })?;
        Ok(Self {
            target: target.to_owned(),
            written,
            file: Some(file),
            committed: false,
        })
    }

    /// The path the credentials end up at.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Writes `text`, syncs it, and (with `--force`) moves it into place.
    pub fn commit(mut self, text: &str, client_id: &str) -> Result<(), OutputError> {
        let write_error = |source| OutputError::Write {
            path: self.target.clone(),
            client_id: client_id.to_owned(),
            source,
        };
        let mut file = match self.file.take() {
            Some(file) => file,
            None => return Err(write_error(io::Error::other("file already closed"))),
        };
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_error)?;
        drop(file);
        if self.written != self.target {
            std::fs::rename(&self.written, &self.target).map_err(write_error)?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            self.file = None;
            let _ = std::fs::remove_file(&self.written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskmanager::CLIENTS_PATH;
    use shared::Secret;
    use std::os::unix::fs::PermissionsExt;

    fn client(id: &str, secret: &str) -> RegisteredClient {
        RegisteredClient {
            info: ClientInfo {
                client_id: id.into(),
                name: "MCP Server".into(),
                redirect_uris: vec!["http://localhost:9000/oauth/callback".into()],
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                scope: Some("read write".into()),
                created_at: Some("2025-01-02T03:04:05Z".into()),
            },
            client_secret: Secret::new(secret.into()),
        }
    }

    fn base() -> BaseUrl {
        BaseUrl::parse("http://localhost:4321/", CLIENTS_PATH).unwrap()
    }

    #[test]
    fn plain_values_are_not_quoted() {
        assert_eq!(shell_quote("abc-DEF_123.x"), "abc-DEF_123.x");
        assert_eq!(
            shell_quote("http://localhost:4321"),
            "http://localhost:4321"
        );
        assert_eq!(shell_quote("a=b+c/d%e@f,g"), "a=b+c/d%e@f,g");
    }

    #[test]
    fn other_values_are_single_quoted() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("~root"), "'~root'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("a;b`c`\"d\\"), "'a;b`c`\"d\\'");
    }

    #[test]
    fn quoted_values_survive_a_shell() {
        let nasty = "s3cr'et $(id) `id` \"x\" \\ ~ *";
        let script = format!("V={}; printf %s \"$V\"", shell_quote(nasty));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
    }

    #[test]
    fn env_lines_carry_base_url_id_and_secret() {
        assert_eq!(
            env_lines(&base(), &client("mcp-1", "s3cr3t")),
            "TASKMANAGER_BASE_URL=http://localhost:4321\nTASKMANAGER_CLIENT_ID=mcp-1\n\
             TASKMANAGER_CLIENT_SECRET=s3cr3t\n"
        );
        assert!(env_lines(&base(), &client("id", "a b")).contains("SECRET='a b'\n"));
    }

    #[test]
    fn registered_client_json_has_the_secret_and_summary_does_not() {
        let c = client("mcp-1", "s3cr3t");
        let v: serde_json::Value = serde_json::from_str(&client_json(&c).unwrap()).unwrap();
        assert_eq!(v["client_secret"], "s3cr3t");
        assert_eq!(v["client_id"], "mcp-1");
        assert_eq!(v["scope"], "read write");
        for dest in [Destination::Stdout, Destination::File("x.env".into())] {
            for json in [false, true] {
                let s = register_summary(&base(), &c, &dest, json);
                assert!(!s.contains("s3cr3t"), "{s}");
                assert!(s.contains("mcp-1"), "{s}");
            }
        }
    }

    #[test]
    fn table_aligns_columns_and_shows_no_secret() {
        let mut a = client("mcp-auth-server-local", "s3cr3t").info;
        a.redirect_uris
            .push("http://127.0.0.1:9000/oauth/callback".into());
        let mut b = client("c2", "x").info;
        b.name = "Evil\u{1b}[2J".into();
        b.redirect_uris.clear();
        b.created_at = None;
        let table = clients_table(&[a, b]);
        let uris = "http://localhost:9000/oauth/callback, http://127.0.0.1:9000/oauth/callback";
        let expected = [
            format!(
                "CLIENT ID              NAME        {:74}  CREATED",
                "REDIRECT URIS"
            ),
            format!("mcp-auth-server-local  MCP Server  {uris}  2025-01-02T03:04:05Z"),
            format!("c2                     Evil?[2J    {:74}  -", "-"),
        ];
        assert_eq!(table, expected.join("\n") + "\n");
        assert!(!table.contains("s3cr3t"));
        assert_eq!(clients_table(&[]), "");
    }

    #[test]
    fn list_summary_counts() {
        assert!(list_summary(&base(), 0).starts_with("No OAuth clients"));
        assert!(list_summary(&base(), 1).starts_with("1 OAuth client is"));
        assert!(list_summary(&base(), 3).starts_with("3 OAuth clients are"));
    }

    #[test]
    fn output_file_is_created_0600_and_never_overwritten_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("auth.env");

        let f = PendingFile::create(&path, false).unwrap();
        f.commit("A=1\n", "id").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(matches!(
            PendingFile::create(&path, false),
            Err(OutputError::Exists(_))
        ));

        // --force replaces it, and a looser mode of the old file does not survive.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        PendingFile::create(&path, true)
            .unwrap()
            .commit("A=2\n", "id")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=2\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        // Not committed (the registration failed): nothing is left behind.
        let other = dir.join("other.env");
        drop(PendingFile::create(&other, false).unwrap());
        assert!(!other.exists());
        drop(PendingFile::create(&path, true).unwrap());
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
    }
}
