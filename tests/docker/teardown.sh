#!/usr/bin/env bash
# Stop the test engines started by tests/docker/setup.sh, by PID, and clean up.
#
#   tests/docker/teardown.sh [--keep] [N...]     default: every $SB_DOCKER_ROOT/docker-*
#
# For each engine: `docker rm -f` its containers, SIGTERM dockerd (the pid in its
# pidfile), wait (a zombie counts as gone), SIGKILL if it lingers, then end any
# containerd / shim still running from that engine's directories (found by their
# command line naming the directory, killed by PID), unmount what is left under the
# directory and remove it (kept with --keep, except its exec root).
# Idempotent: an engine that is not running is just cleaned up.

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"

keep=
if [ "${1:-}" = --keep ]; then
  keep=1
  shift
fi

stop_engine() {
  local n=$1 d pid ids p m
  d=$(engine_dir "$n")
  [ -d "$d" ] || return 0
  pid=$(cat "$d/docker.pid" 2>/dev/null || true)
  # Only a dockerd whose command line names this directory is ours.
  if alive "$pid" && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$d/"; then
    pid=
  fi
  if alive "$pid"; then
    ids=$(dk "$n" ps -aq 2>/dev/null || true)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      dk "$n" rm -f $ids >/dev/null 2>&1 || true
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 30; then
      log "engine $n: dockerd $pid ignored SIGTERM for 30 s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || log "engine $n: dockerd $pid still alive"
    fi
  fi
  # containerd, shims and container processes left behind (e.g. after a kill -9).
  for p in $(pids_under "$d"); do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in $(pids_under "$d"); do
    wait_gone "$p" 5 || kill -KILL "$p" 2>/dev/null || true
  done
  for m in $(mounts_under "$d"); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "engine $n: cannot unmount $m"
  done
  if [ -n "$keep" ]; then
    rm -rf "$d"/exec "$d"/exec.* "$d/docker.sock" "$d/docker.pid"
  else
    rm -rf "$d"
  fi
  log "engine $n: stopped"
}

if [ $# -eq 0 ]; then
  for d in "$SB_DOCKER_ROOT"/docker-*; do
    [ -d "$d" ] && set -- "$@" "${d##*/docker-}"
  done
fi
for n in "$@"; do
  stop_engine "$n"
done
