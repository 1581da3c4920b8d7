#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: a WebGPU-capable Vulkan driver
# (Mesa lavapipe >= 23 from bookworm-backports when no adapter is found), Debian's
# Chromium for the browser test, ONNX's backend node tests, and the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/camgpu-xdg}"
mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR" 2>/dev/null || true

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_packages=()
need_backports_mesa=0

if ! dpkg -s libonnx-testdata >/dev/null 2>&1; then apt_packages+=(libonnx-testdata); fi
if ! command -v chromium >/dev/null 2>&1; then apt_packages+=(chromium); fi

mesa_version() { dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null || true; }
mv="$(mesa_version)"
if [ -z "$mv" ] || dpkg --compare-versions "$mv" lt 23; then need_backports_mesa=1; fi

if [ "$need_backports_mesa" = 1 ] || [ "${#apt_packages[@]}" -gt 0 ]; then
  if [ "$need_backports_mesa" = 1 ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # Append bookworm-backports once; the pattern only matches a line that lacks it.
    $SUDO sed -i -E '/^Suites: bookworm bookworm-updates$/ s/$/ bookworm-backports/' /etc/apt/sources.list.d/debian.sources
  fi
  $SUDO apt-get update -qq
  if [ "${#apt_packages[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}"
  fi
  if [ "$need_backports_mesa" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
echo "setup: ok (mesa-vulkan-drivers $(mesa_version))"
