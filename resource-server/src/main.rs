//! `resource-server`: parses flags, binds, and hands over to [`resource_server::serve`].

use clap::Parser;
use resource_server::config::Args;
use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shared::logging::init();
    let args = Args::parse();
    let addr = SocketAddr::new(args.host, args.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("resource-server: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match resource_server::serve(listener, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resource-server: {e}");
            ExitCode::FAILURE
        }
    }
}
