# shellcheck shell=bash
# Shared by setup.sh and teardown.sh: a real Docker engine with user-namespace
# remapping and NO networking, in its own directories, for sockbroker's
# end-to-end tests. See /work/shared/REAL-PARTS.md for the facts behind each step.
#
# Layout of engine N (N = 1, 2, ...):
#   $SB_DOCKER_ROOT/docker-N/            world-traversable (0755)
#     data/        --data-root     (images, containers; data/UID.GID with userns-remap)
#     exec/        --exec-root     (containerd, shims, runtime state)
#     docker.sock  -H unix://...   (root:docker 0660 — the socket tenants cannot use)
#     docker.pid   --pidfile
#     dockerd.log  the engine's output
#     remap        the --userns-remap user this engine was started with

set -euo pipefail

SB_DOCKER_ROOT=${SB_DOCKER_ROOT:-/var/lib/sockbroker-test}
SB_IMAGE=${SB_IMAGE:-tenant:local}

log() { printf 'sockbroker-docker: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

engine_dir() { printf '%s/docker-%s' "$SB_DOCKER_ROOT" "$1"; }

# docker CLI on the host (any of the static /usr/local/bin/docker or docker.io's).
host_docker() { command -v docker || die "no docker CLI on the host"; }

# dk N ARGS... : the docker CLI against engine N, with a deadline.
dk() {
  local n=$1
  shift
  timeout 60 "$(host_docker)" -H "unix://$(engine_dir "$n")/docker.sock" "$@"
}

# True if PID is alive and not a zombie (PID 1 here may reap late: a zombie is gone).
alive() {
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# wait_gone PID SECONDS: poll until PID is gone (or a zombie); 1 if still alive.
wait_gone() {
  local pid=$1 end=$((SECONDS + $2))
  while alive "$pid"; do
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.1
  done
  return 0
}

# PIDs of processes whose command line mentions engine dir D (our containerd, shims).
pids_under() {
  local d=$1 p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = "$$" ] && continue
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$d/"; then
      echo "$p"
    fi
  done
}

# Mount points at or under D, deepest first.
mounts_under() {
  local d=$1
  awk -v d="$d" '{ m = $5; gsub(/\\040/, " ", m); if (m == d || index(m, d "/") == 1) print m }' \
    /proc/self/mountinfo | sort -r
}
