#!/usr/bin/env bash
# Builds camera-node for the Raspberry Pi with Debian's cross compilers (no
# Docker): 64-bit Pi OS (aarch64) and 32-bit Pi OS (armv7), stripped, and a
# .deb for each (arm64, armhf). Installs the cross compilers, the Rust
# targets and cargo-deb when missing.
#
# Usage: scripts/build-pi.sh [--no-deb] [TARGET...]
#   TARGET: aarch64-unknown-linux-gnu (default) and/or armv7-unknown-linux-gnueabihf
# Output: dist/camera-node-<target>, dist/camfleet-node_<version>-1_<arch>.deb and
#         dist/camfleet-node-<version>-<target>.tar.gz (binary, unit, default
#         config, install-node.sh: for a Pi without dpkg)
set -euo pipefail
cd "$(dirname "$0")/.."

deb=yes
targets=()
for arg in "$@"; do
  case "$arg" in
    --no-deb) deb=no ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) targets+=("$arg") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

packages=()
for t in "${targets[@]}"; do
  case "$t" in
    aarch64-unknown-linux-gnu) packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
    armv7-unknown-linux-gnueabihf) packages+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
    *) echo "unsupported target: $t" >&2; exit 2 ;;
  esac
done
scripts/install-deps.sh "${packages[@]}"
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  grep -qx "$t" <<< "$installed" || rustup target add "$t"
done
if [ "$deb" = yes ] && ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb (once)..."
  cargo install --locked --quiet cargo-deb
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/camfleet-target}"
mkdir -p dist
rm -f dist/.built-*   # run stamps of the Pi tests (camera-node/tests/pi.rs)
for t in "${targets[@]}"; do
  echo "== camera-node for $t"
  cargo build --release --locked -p camera-node --target "$t"
  # The release profile strips symbols already; this checks it did.
  bin="$CARGO_TARGET_DIR/$t/release/camera-node"
  # Replace by rename, never in place: a node running from dist/ (under
  # qemu-user, which maps the file without the kernel's ETXTBSY guard) must
  # keep its own copy.
  dest="dist/camera-node-$t"
  cmp -s "$bin" "$dest" || { cp "$bin" "$dest.new" && mv -f "$dest.new" "$dest"; }
  echo "   dist/camera-node-$t: $(stat -c %s "$bin") bytes"
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  stage=$(mktemp -d)
  mkdir "$stage/camfleet-node"
  cp "$bin" scripts/install-node.sh systemd/camera-node.service packaging/etc/node.toml "$stage/camfleet-node/"
  tar -C "$stage" -czf "dist/camfleet-node-$version-$t.tar.gz.new" camfleet-node
  mv -f "dist/camfleet-node-$version-$t.tar.gz.new" "dist/camfleet-node-$version-$t.tar.gz"
  rm -rf "$stage"
  echo "   dist/camfleet-node-$version-$t.tar.gz"
  if [ "$deb" = yes ]; then
    cargo deb --no-build --no-strip -p camera-node --target "$t" --output dist/ | sed 's/^/   /'
  fi
done
