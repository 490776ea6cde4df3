//! The command line's definition (clap derive), on its own so that `build.rs`
//! can include it too and generate the man pages and shell completions from
//! the very definitions the binary parses with. Depends on clap, humantime and
//! std only, for that reason.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Where the config is read from unless `--config` or `$SOCKBROKER_CONFIG` say otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/sockbroker/sockbroker.yaml";

/// `sockbroker --version`: the package version and the git commit it was built
/// from (`build.rs` sets `SOCKBROKER_VERSION_LINE`, e.g. `0.1.0 (git 5b323e9d1f2a)`;
/// "git unknown" when built outside a git checkout, e.g. from a crate tarball).
pub const VERSION_LINE: &str = match option_env!("SOCKBROKER_VERSION_LINE") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// sockbroker: one daemon that serves correctly owned Unix sockets to
/// user-namespaced containers and relays them to an upstream such as
/// /var/run/docker.sock, following edits of its YAML file live.
#[derive(Parser, Debug)]
#[command(name = "sockbroker", version = VERSION_LINE, about, long_about = None)]
// `--help` only: every subcommand gets a man page, and `help` would be one without.
#[command(disable_help_subcommand = true)]
#[command(
    after_help = "Reload: SIGHUP (or an edit of the file). Stop: SIGTERM/SIGINT \
    (a second one exits at once). Upgrade in place: SIGUSR2 (starts the binary at \
    the path it was started from and hands it every socket). Log filter: RUST_LOG (default info). \
    Documentation: /usr/share/doc/sockbroker"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker in the foreground.
    #[command(
        after_help = "Signals: SIGHUP re-reads the config (an edit of the file \
        does too). SIGUSR2 upgrades in place: starts the binary at the path the broker \
        was started from, hands it every socket, and lets open connections finish here. \
        SIGTERM stops: open connections may finish for up to drain_timeout; under \
        systemd's descriptor store the socket files stay for the next start, otherwise \
        they are removed. SIGINT stops and removes them. A second stop signal exits at \
        once. See /usr/share/doc/sockbroker/operations.md."
    )]
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
    /// Validate the config, print the resolved tenants; exit 0 if valid, 1 if
    /// not. Warns (still exit 0) about tenants whose socket is root-equivalent
    /// only because `access` was left out.
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
