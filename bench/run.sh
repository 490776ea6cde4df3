#!/usr/bin/env bash
# Build the release binaries and run the end-to-end benchmark:
# a direct connection vs `socat UNIX-LISTEN:…,fork UNIX-CLIENT:…` vs sockbroker.
#
#   bench/run.sh            # full run (a few minutes; results table on stdout)
#   bench/run.sh --quick    # smoke run (well under a minute of measuring)
#   bench/run.sh --help     # all options (--only, --rounds, --duration-ms, ...)
#
# Needs socat (apt-get install socat) and root: the broker's tenants are owned by
# uid/gid 0 and the open-files limit is raised. Traffic stays on Unix sockets.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v socat >/dev/null || { echo "bench/run.sh: socat is not installed (apt-get install socat)" >&2; exit 1; }
cargo build --release --workspace --bins
exec target/release/sockbroker-bench --broker target/release/sockbroker "$@"
