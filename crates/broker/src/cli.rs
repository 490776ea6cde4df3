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
            crate::logging::init(log_format);
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
            // The data path's own threads first (a single-threaded runtime
            // per core, `workers`), then the control plane's runtime.
            let workers = match crate::workers::Workers::start(crate::workers::default_count()) {
                Ok(w) => crate::workers::install(w),
                Err(e) => {
                    crate::logging::flush();
                    eprintln!("sockbroker: cannot start the data-path threads: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    crate::logging::flush();
                    eprintln!("sockbroker: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(daemon::run(opts));
            // The daemon has drained its connections; what is left on the
            // workers (nothing, or connections past the drain) ends here.
            workers.stop();
            // Tasks still running log as the runtime drops; then every queued
            // line is written before the process ends.
            drop(rt);
            crate::logging::flush();
            match result {
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
