#!/usr/bin/env bash
# Installs camera-node on a Raspberry Pi without the .deb: the binary, a
# default /etc/camfleet/node.toml (an existing one is kept), the systemd unit
# and the camfleet service user (in group video). Safe to run again: that is
# also how to upgrade.
#
# Usage: sudo scripts/install-node.sh [BINARY]
#   BINARY: the node for this Pi; default ./camera-node, else
#           dist/camera-node-<target> for this machine (scripts/build-pi.sh).
#   Works from a camfleet checkout or from the unpacked
#   dist/camfleet-node-<version>-<target>.tar.gz (everything side by side).
# Env: ROOT=DIR  install into a directory tree (no user, no systemctl).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${ROOT:-}"

find_file() {  # a file beside this script (tarball) or in the checkout
  for c in "$here/$1" "$here/../$2"; do [ -f "$c" ] && { echo "$c"; return; }; done
  echo "cannot find $1 beside $0 or at $2 in a checkout" >&2; exit 1
}
unit=$(find_file camera-node.service systemd/camera-node.service)
config=$(find_file node.toml packaging/etc/node.toml)

bin="${1:-}"
if [ -z "$bin" ]; then
  case "$(uname -m)" in
    aarch64) target=aarch64-unknown-linux-gnu ;;
    armv7l|armv8l) target=armv7-unknown-linux-gnueabihf ;;
    *) target=x86_64-unknown-linux-gnu ;;
  esac
  for c in "$here/camera-node" "./camera-node" "$here/../dist/camera-node-$target"; do
    [ -x "$c" ] && { bin=$c; break; }
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "no camera-node binary found: pass its path (scripts/build-pi.sh makes dist/camera-node-<target>)" >&2
  exit 1
fi
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  echo "needs root: sudo $0 $*" >&2
  exit 1
fi

install -D -m 755 "$bin" "$root/usr/bin/camera-node"
install -D -m 644 "$unit" "$root/etc/systemd/system/camera-node.service"
if [ -e "$root/etc/camfleet/node.toml" ]; then
  echo "keeping the existing $root/etc/camfleet/node.toml"
else
  install -D -m 644 "$config" "$root/etc/camfleet/node.toml"
  echo "wrote $root/etc/camfleet/node.toml: set broker = \"mqtt://<your broker>:1883\" there"
fi
echo "installed $("$bin" --version 2>/dev/null || echo camera-node) as $root/usr/bin/camera-node"

[ -z "$root" ] || exit 0
if ! getent passwd camfleet >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin camfleet
  echo "created the camfleet service user"
fi
if getent group video >/dev/null; then usermod -a -G video camfleet; fi
systemctl daemon-reload
if systemctl is-active --quiet camera-node; then
  systemctl restart camera-node
  echo "restarted camera-node"
else
  echo "start it now and at every boot with: sudo systemctl enable --now camera-node"
fi
