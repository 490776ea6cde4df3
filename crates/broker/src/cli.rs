//! Command line (clap): `run`, `check`, `status`. The definitions are in
//! `cli/args.rs`, which `build.rs` shares to generate the man pages and shell
//! completions.

mod args;
pub mod check;

use std::process::ExitCode;

use clap::Parser;

pub use args::*;

use crate::config::SubIdFiles;
use crate::daemon::{self, RunOptions};
use crate::watch::WatchMode;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).init(),
    }
}

/// Parse the command line and run; the binary's `main` is just this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            log_format,
            watch,
            poll_interval,
            retry_interval,
            debounce,
        } => {
            init_logging(log_format);
            let opts = RunOptions {
                config,
                watch: match watch {
                    WatchArg::Inotify => WatchMode::Inotify,
                    WatchArg::Poll => WatchMode::Poll(poll_interval),
                    WatchArg::Off => WatchMode::Off,
                },
                retry_interval,
                debounce,
                subids: SubIdFiles::from_env(),
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sockbroker: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(daemon::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sockbroker: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => check::run(&config),
        Command::Status { url } => match crate::status::run(&url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sockbroker status: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
