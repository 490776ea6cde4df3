//! Command line (clap): `run`, `check`, `status`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, SubIdFiles};
use crate::daemon::{self, RunOptions};
use crate::watch::WatchMode;

/// Where the config is read from unless `--config` or `$SOCKBROKER_CONFIG` say otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/sockbroker/sockbroker.yaml";

/// sockbroker: one daemon that serves correctly owned Unix sockets to
/// user-namespaced containers and relays them to an upstream such as
/// /var/run/docker.sock, following edits of its YAML file live.
#[derive(Parser, Debug)]
#[command(name = "sockbroker", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker in the foreground.
    Run {
        /// Config file.
        #[arg(long, env = "SOCKBROKER_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log line format (filter with RUST_LOG, default info).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// How config file changes are noticed: inotify, poll (filesystems
        /// without inotify), or off (SIGHUP only).
        #[arg(long, value_enum, default_value_t = WatchArg::Inotify)]
        watch: WatchArg,
        /// Poll interval for `--watch poll`.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        poll_interval: Duration,
        /// How often tenants that are down are tried again.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        retry_interval: Duration,
        /// Quiet time after a config file event before it is re-read.
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        debounce: Duration,
    },
    /// Validate the config, print the resolved tenants; exit 0 if valid, 1 if not.
    Check {
        /// Config file.
        #[arg(long, env = "SOCKBROKER_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Ask a running broker for its tenants and print a table.
    Status {
        /// The broker's metrics/health address: http://HOST:PORT or unix:/PATH.
        #[arg(long, default_value = "http://127.0.0.1:9477")]
        url: String,
    },
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Watch mode as given on the command line.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchArg {
    /// inotify on the config file's directory.
    Inotify,
    /// Poll the directory.
    Poll,
    /// Do not watch; reload on SIGHUP only.
    Off,
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
        Command::Check { config } => match config::load(&config, &SubIdFiles::from_env()) {
            Ok(cfg) => {
                print!("{}", config::format_table(&cfg));
                println!(
                    "{}: valid, {} tenant(s)",
                    config.display(),
                    cfg.tenants.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "{}: invalid ({} error(s)); nothing would be started",
                    config.display(),
                    errors.0.len()
                );
                ExitCode::FAILURE
            }
        },
        Command::Status { url } => match crate::status::run(&url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sockbroker status: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
