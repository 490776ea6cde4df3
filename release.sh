#!/usr/bin/env bash
# Make a release locally, no hosted CI and no registry needed (as root, after
# tests/setup.sh):
#
#   ./release.sh [OUTDIR]        # default dist/<version>/
#
# writes
#   sockbroker-<version>-<arch>-linux-static   one static binary (no libc needed at run time)
#   sockbroker_<version>-1_<arch>.deb           the Debian package (cargo deb -p sockbroker)
#   sockbroker-image-<version>.tar              the container image (docker load -i …)
#   SHA256SUMS                                  sha256sum -c SHA256SUMS checks them
#
# Static binary: the glibc target with `-C target-feature=+crt-static`, not musl.
# The Rust musl target (rust-std for x86_64-unknown-linux-musl) is not installed
# here and rustup cannot download it; Debian's musl-tools gives a C toolchain
# only. A static glibc binary is what deploy/container/Dockerfile already ships:
# the broker resolves no host names and reads /etc/subuid itself, so glibc's
# NSS (the usual catch of static glibc) is never used. docs/packaging.md.
#
# Image: deploy/container/Dockerfile.prebuilt (FROM scratch + the static
# binary) built on a network-less engine that tests/docker/setup.sh starts
# (engine 4; the engines' lock keeps test runs from other checkouts out), then
# `docker save`. Set SB_RELEASE_NO_IMAGE=1 to skip it on a host without Docker.
set -euo pipefail
cd "$(dirname "$0")"

[ "$(id -u)" = 0 ] || { echo "release.sh: run as root (the image is built on a private engine)" >&2; exit 1; }
version=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "sockbroker"))')
host=$(rustc -vV | sed -n 's/^host: //p')
arch=${host%%-*}
out=${1:-dist/$version}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "release.sh: $*" >&2; }

# 1. The static binary, in a target directory of its own (other RUSTFLAGS).
log "static binary ($host, +crt-static)"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
  cargo build --release --locked -p sockbroker --target "$host"
static=$out/sockbroker-$version-$arch-linux-static
strip -o "$static" "target/static/$host/release/sockbroker"
# No NEEDED entry: no shared library (the libc included) is loaded at run time.
if readelf -d "$static" | grep -q NEEDED; then
  echo "release.sh: $static is not static:" >&2; readelf -d "$static" | grep NEEDED >&2; exit 1
fi
"$static" --version

# 2. The Debian package.
log "Debian package"
cargo deb -p sockbroker -- --locked
deb=$(ls -t target/debian/sockbroker_"$version"-*_*.deb | head -1)
cp "$deb" "$out/"
lintian --fail-on error "$out/$(basename "$deb")"

# 3. The container image as a tarball.
image=$out/sockbroker-image-$version.tar
if [ -n "${SB_RELEASE_NO_IMAGE:-}" ]; then
  log "image skipped (SB_RELEASE_NO_IMAGE)"
  rm -f "$image"
else
  log "container image (network-less engine 4)"
  root=${SB_DOCKER_ROOT:-/var/lib/sockbroker-test}
  mkdir -p "$root"
  exec 9>"$root/.lock"
  flock 9
  trap 'SB_DOCKER_ROOT=$root bash tests/docker/teardown.sh 4 >/dev/null 2>&1 || true' EXIT
  sock=$(SB_DOCKER_ROOT=$root bash tests/docker/setup.sh engine 4 dockremap | tail -1)
  ctx=$(mktemp -d)
  cp "$static" "$ctx/sockbroker"
  tag=sockbroker:$version
  DOCKER_BUILDKIT=0 docker -H "unix://$sock" build --network none -q \
    -f deploy/container/Dockerfile.prebuilt -t "$tag" "$ctx" >/dev/null
  rm -rf "$ctx"
  docker -H "unix://$sock" run --rm --network none --pull never "$tag" --version
  docker -H "unix://$sock" save -o "$image" "$tag"
  chmod 644 "$image"
  docker -H "unix://$sock" rmi "$tag" >/dev/null
fi

# 4. Checksums.
(cd "$out" && rm -f SHA256SUMS && sha256sum -- * > SHA256SUMS && sha256sum -c --quiet SHA256SUMS)
log "done: $out"
ls -l "$out"
