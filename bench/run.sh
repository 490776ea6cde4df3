#!/usr/bin/env bash
# Build the release binaries and run the end-to-end benchmark: a direct
# connection vs `socat UNIX-LISTEN:…,fork UNIX-CLIENT:…` vs the floor relay vs
# sockbroker (and, in the policy group, HAProxy set up like docker-socket-proxy),
# behind an upstream of tokio tasks and one of blocking threads; it ends with
# the targets of docs/performance.md, each "met" or "NOT met".
#
#   bench/run.sh            # full run (about 10 minutes; results on stdout)
#   bench/run.sh --quick    # smoke run (well under a minute of measuring)
#   bench/run.sh --help     # all options (--only, --rounds, --duration-ms, ...)
#
# Needs socat (apt-get install socat), haproxy for its column (else it is left
# out) and root: the broker's tenants are owned by
# uid/gid 0 and the open-files limit is raised. Traffic stays on Unix sockets.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v socat >/dev/null || { echo "bench/run.sh: socat is not installed (apt-get install socat)" >&2; exit 1; }
cargo build --release --workspace --bins
exec target/release/sockbroker-bench --broker target/release/sockbroker "$@"
