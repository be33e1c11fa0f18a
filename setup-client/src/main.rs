//! `setup-client`: registers the auth server's OAuth client at TaskManager (or lists the
//! registered ones) with an administrator's session cookie, and prints the credentials as env
//! lines for the auth server.
//!
//! Exit codes (docs/CONTRACTS.md): 0 ok, 2 bad arguments or invalid URL, 3 TaskManager
//! unreachable or timed out, 4 session cookie missing, expired or not an administrator's,
//! 5 TaskManager answered something unexpected, 6 local I/O.

mod cli;
mod output;
mod taskmanager;

use clap::Parser;
use std::process::ExitCode;

/// What kind of failure ended the run; each kind has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad arguments or an invalid URL.
    Usage,
    /// TaskManager could not be reached, or did not answer in time.
    Unreachable,
    /// The session cookie is missing, expired, or not an administrator's.
    NotAuthorized,
    /// TaskManager answered, but not what its clients API promises.
    Unexpected,
    /// Reading stdin, writing stdout or `--output` failed.
    LocalIo,
}

impl Kind {
    /// The process exit code of this kind of failure.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 2,
            Kind::Unreachable => 3,
            Kind::NotAuthorized => 4,
            Kind::Unexpected => 5,
            Kind::LocalIo => 6,
        }
    }
}

/// Every way a run can fail. Messages are one sentence and never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] cli::ConfigError),
    #[error(transparent)]
    TaskManager(#[from] taskmanager::TaskManagerError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
}

impl Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Config(e) => e.kind(),
            Error::TaskManager(e) => e.kind(),
            Error::Output(_) => Kind::LocalIo,
        }
    }
}

fn main() -> ExitCode {
    // Help, version and flag errors exit here (2 for errors, as clap does).
    let args = cli::Args::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Output(output::OutputError::Runtime(e)))
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::stderr(&format!("error: {e}\n"));
            ExitCode::from(e.kind().exit_code())
        }
    }
}

async fn run(args: cli::Args) -> Result<(), Error> {
    let config = args.into_config()?;
    let tm = taskmanager::TaskManager::new(&config.base_url, config.cookie, config.timeouts)?;
    match config.mode {
        cli::Mode::List => {
            let clients = tm.list_clients().await?;
            let text = if config.json {
                output::clients_json(&clients)?
            } else {
                output::clients_table(&clients)
            };
            output::stdout(&text)?;
            output::stderr(&output::list_summary(&config.base_url, clients.len()));
        }
        cli::Mode::Register {
            request,
            output: file,
        } => {
            // Claim the output file before registering: a secret TaskManager shows only once
            // must not be lost because the file turned out to exist or be unwritable.
            let pending = file
                .map(|f| output::PendingFile::create(&f.path, f.force))
                .transpose()?;
            let client = tm.register(&request).await?;
            let text = if config.json {
                output::client_json(&client)?
            } else {
                output::env_lines(&config.base_url, &client)
            };
            let destination = match pending {
                Some(file) => {
                    let path = file.path().to_owned();
                    file.commit(&text, &client.info.client_id)?;
                    output::Destination::File(path)
                }
                None => {
                    output::stdout(&text).map_err(|e| e.after_registration(&client))?;
                    output::Destination::Stdout
                }
            };
            output::stderr(&output::register_summary(
                &config.base_url,
                &client,
                &destination,
                config.json,
            ));
        }
    }
    Ok(())
}
