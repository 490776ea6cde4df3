#!/usr/bin/env bash
# Run every fuzz target for a bounded time; exit non-zero on a crash, a panic,
# a timeout or a memory blow-up (libFuzzer writes the input to artifacts/TARGET/).
#
#   crates/policy/fuzz/run.sh [SECONDS_PER_TARGET]     default 60
#
# SB_FUZZ_VERBOSITY=0 hides libFuzzer's line per new input (CI sets it; a
# crash report and the final stats are printed either way).
#
# Needs the nightly toolchain (installed on the project's machines) and
# cargo-fuzz (installed from crates.io when missing). The first build takes a
# few minutes (everything is rebuilt with sanitizer instrumentation).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain (rustup toolchain list); cannot run cargo-fuzz" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
for target in request framing rule_match scope_query scope_body; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${secs}s"
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -verbosity="${SB_FUZZ_VERBOSITY:-1}"
done
