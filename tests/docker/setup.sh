#!/usr/bin/env bash
# Start real Docker engines with user-namespace remapping and no networking, for
# sockbroker's end-to-end tests (tests/e2e/docker.rs runs this; it also works by hand).
#
#   tests/docker/setup.sh install                 packages, remap users, pinned id ranges
#   tests/docker/setup.sh engine N USER           start engine N remapped to USER, import tenant:local
#   tests/docker/setup.sh                         install + engine 1 dockremap + engine 2 sbtenant2
#
# Root only. Never pulls, never enables networking: every engine runs with
# --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false.
# Stop with tests/docker/teardown.sh [N...].
#
# Id ranges (pinned so container root is a known host uid):
#   dockremap  231072:65536   container root = host 231072
#   sbtenant2  296608:65536   container root = host 296608
#
# On success, `engine` prints the engine's socket path on stdout.

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"

# The id range each remap user gets (only users listed here are created/pinned).
range_of() {
  case $1 in
    dockremap) echo 231072:65536 ;;
    sbtenant2) echo 296608:65536 ;;
    *) die "unknown remap user $1 (known: dockremap sbtenant2)" ;;
  esac
}

install_packages() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  # busybox-static: a dynamic busybox (ldd succeeds) would not run in the image.
  if ! /bin/busybox --list >/dev/null 2>&1 || ldd /bin/busybox >/dev/null 2>&1; then
    need+=(busybox-static)
  fi
  command -v socat >/dev/null || need+=(socat)
  [ ${#need[@]} -eq 0 ] && return 0
  # An install must not start a default engine: policy-rc.d exiting 101 forbids it.
  local made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# pin USER FILE RANGE: add "USER:RANGE" to FILE unless present; refuse other ranges
# for USER (dockerd would concatenate them and container root would be another uid).
pin() {
  local user=$1 file=$2 range=$3 other
  touch "$file"
  if ! grep -qx "$user:$range" "$file"; then
    printf '%s:%s\n' "$user" "$range" >>"$file"
    log "added $user:$range to $file"
  fi
  other=$(grep "^$user:" "$file" | grep -vx "$user:$range" || true)
  [ -z "$other" ] || die "$file has other ranges for $user ($other); remove them so container root is ${range%%:*}"
}

install_users() {
  local user
  for user in dockremap sbtenant2; do
    getent passwd "$user" >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    pin "$user" /etc/subuid "$(range_of "$user")"
    pin "$user" /etc/subgid "$(range_of "$user")"
  done
}

# The image every test container runs: busybox (applets in /bin) and a docker CLI.
build_image() {
  local n=$1 d rootfs cli lib
  d=$(engine_dir "$n")
  if dk "$n" image inspect "$SB_IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  rootfs=$d/rootfs
  rm -rf "$rootfs"
  mkdir -p "$rootfs"/{bin,etc,tmp,root,run,proc,sys,dev}
  chmod 1777 "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $("$rootfs/bin/busybox" --list); do
    [ -e "$rootfs/bin/$a" ] || ln -s busybox "$rootfs/bin/$a"
  done
  # A static docker CLI where there is one; else docker.io's plus its libraries.
  cli=
  for c in /usr/local/bin/docker /usr/bin/docker; do
    [ -x "$c" ] && { cli=$c; break; }
  done
  [ -n "$cli" ] || die "no docker CLI to put into the image"
  cp "$cli" "$rootfs/bin/docker"
  if ldd "$cli" >/dev/null 2>&1; then
    for lib in $(ldd "$cli" | grep -o '/[^ ]*'); do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  fi
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  tar -C "$rootfs" -c . | dk "$n" import -c 'ENV PATH=/bin' - "$SB_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "engine $n: imported $SB_IMAGE"
}

start_engine() {
  local n=$1 user=$2 d pid
  d=$(engine_dir "$n")
  # A previous run's engine (crashed test, killed CI job): stop it first.
  "$here/teardown.sh" --keep "$n" >&2 || true
  mkdir -p "$d"
  # Parents must be traversable by the remapped root, or `docker run` fails with
  # "error preparing rootfs ... permission denied".
  chmod 755 "$SB_DOCKER_ROOT" "$d"
  echo "$user" >"$d/remap"
  rm -f "$d/docker.sock" "$d/docker.pid"
  setsid dockerd \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --userns-remap="$user" \
    --data-root "$d/data" --exec-root "$d/exec" \
    -H "unix://$d/docker.sock" --pidfile "$d/docker.pid" \
    </dev/null >"$d/dockerd.log" 2>&1 &
  pid=$!
  local end=$((SECONDS + 60))
  until dk "$n" version >/dev/null 2>&1; do
    if ! alive "$pid"; then
      tail -20 "$d/dockerd.log" >&2
      die "engine $n: dockerd exited during startup (log: $d/dockerd.log)"
    fi
    if [ "$SECONDS" -ge "$end" ]; then
      tail -20 "$d/dockerd.log" >&2
      die "engine $n: not up after 60 s (log: $d/dockerd.log)"
    fi
    sleep 0.1
  done
  [ -s "$d/docker.pid" ] || echo "$pid" >"$d/docker.pid"
  log "engine $n: dockerd pid $pid, --userns-remap=$user, socket $d/docker.sock"
  build_image "$n"
  echo "$d/docker.sock"
}

case ${1:-all} in
  install)
    install_packages
    install_users
    ;;
  engine)
    [ $# -eq 3 ] || die "usage: $0 engine N USER"
    range_of "$3" >/dev/null
    install_packages
    install_users
    start_engine "$2" "$3"
    ;;
  all)
    install_packages
    install_users
    start_engine 1 dockremap
    start_engine 2 sbtenant2
    ;;
  *) die "usage: $0 [install | engine N USER]" ;;
esac
