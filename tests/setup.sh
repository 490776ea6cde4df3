#!/usr/bin/env bash
# Install what the tests need on a Debian/Ubuntu machine (as root), so that no
# test has to skip: the README's test command and .ci/run both call this.
# Idempotent: installs only what is missing. Under CI=true a test whose tool is
# missing fails (tests/src/lib.rs, cannot_run), so a step that breaks here shows.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" != 0 ]; then
  echo "tests/setup.sh: run as root (apt-get install; the tests need root too)" >&2
  exit 1
fi

# policy-rc.d keeps package installs (docker.io, and the sockbroker package the
# package test installs) from starting services on this machine.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
fi

need=()
# make and a C compiler: the broker's allocator (jemalloc) is built from source.
command -v make >/dev/null || need+=(make)
command -v cc >/dev/null || need+=(gcc)
# haproxy: the policy-mode peer in benchmarks (bench/run.sh).
command -v haproxy >/dev/null || need+=(haproxy)
# socat: the baseline relay in benchmarks. setpriv/unshare: other uids, user namespaces.
command -v socat >/dev/null || need+=(socat)
command -v setpriv >/dev/null || need+=(util-linux)
# promtool + prometheus: metrics lint and a real scrape.
command -v promtool >/dev/null || need+=(prometheus)
# The Docker scenario (tests/e2e/docker.rs): a real engine, started by the test
# itself with networking disabled, and a static busybox for the test image.
command -v dockerd >/dev/null || need+=(docker.io)
{ /bin/busybox --list >/dev/null 2>&1 && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
# The service tests: systemd-analyze verify of the units, strace for the
# system-call filter check.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v strace >/dev/null || need+=(strace)
# The package test (tests/e2e/package.rs): lintian, man -w, and a venv below.
command -v lintian >/dev/null || need+=(lintian)
command -v man >/dev/null || need+=(man-db)
# crates/policy/tests/go_framing.rs builds a Go net/http server (standard
# library only, offline): what the policy relay forwards is framed the same by Go.
command -v go >/dev/null || need+=(golang-go)
# tests/e2e/scope.rs drives a scoped tenant with a real third-party client.
command -v docker-compose >/dev/null || need+=(docker-compose)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Kubernetes manifests are validated against the bundled schemas of the PyPI
# package kubernetes-validate (works offline); tests/e2e/service/kubernetes.rs looks here.
KV=/opt/sockbroker-ci/kv
if [ ! -x "$KV/bin/kubernetes-validate" ]; then
  python3 -m venv "$KV" && "$KV/bin/pip" install -q kubernetes-validate==1.37.0
fi

# cargo-deb builds the Debian package (tests/e2e/package.rs, release.sh).
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb --version "^3.8"
echo "tests/setup.sh: everything the tests need is installed"
