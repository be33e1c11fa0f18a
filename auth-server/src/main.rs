//! `auth-server`: parse flags, then run the server or an operator command.

use auth_server::config::{Cli, Command, KeysAction};
use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::logging::init();
    let result = match cli.command {
        None => auth_server::run(cli.serve).await,
        Some(Command::ValidateConfig) => validate(&cli.serve),
        Some(Command::Keys { action }) => keys(&cli.serve, action).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auth-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(args: &auth_server::config::ServeArgs) -> Result<(), auth_server::StartError> {
    let settings = args.validate(args.port)?;
    println!(
        "configuration is valid: issuer {} protecting {}",
        settings.issuer, settings.resource
    );
    Ok(())
}

async fn keys(
    args: &auth_server::config::ServeArgs,
    action: KeysAction,
) -> Result<(), auth_server::StartError> {
    let store = auth_server::open_store(args)?;
    let vault = auth_server::open_vault(args)?;
    let now = shared::UnixTime::now();
    match action {
        KeysAction::Rotate => {
            let policy = args.key_policy()?;
            let key =
                auth_server::tokens::keys::rotate(store.as_ref(), &vault, now, &policy).await?;
            println!(
                "new {} signing key {}; the previous key stays published for {}s",
                key.alg,
                key.kid,
                policy.keep_previous.as_secs()
            );
        }
        KeysAction::List => {
            for k in store.list_keys().await? {
                let state = match (k.retired_at, k.expires_at) {
                    (None, _) => "signing".to_owned(),
                    (Some(_), Some(e)) if e > now => format!("published until {}", e.0),
                    _ => "expired".to_owned(),
                };
                println!("{}\t{}\tcreated {}\t{state}", k.kid, k.alg, k.created_at.0);
            }
        }
    }
    Ok(())
}
