#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages camfleet's tests and demo use,
# skipping those already present. Usage: scripts/install-deps.sh [PACKAGE...]
set -euo pipefail

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
  packages=(mosquitto mosquitto-clients ffmpeg openssl qemu-user systemd util-linux
            libopencv-dev clang libclang-dev xvfb curl gstreamer1.0-tools gstreamer1.0-plugins-good
            chromium chromium-driver procps prometheus faketime
            nginx-light libnginx-mod-rtmp python3-gi gir1.2-gst-rtsp-server-1.0 unzip
            gstreamer1.0-libav python3-jinja2)
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
