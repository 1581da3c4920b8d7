#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine for camgpu: npm packages and the build;
# a WebGPU adapter (Mesa lavapipe >= 23 from bookworm-backports when Dawn finds none);
# Debian's Chromium for the browser test; ONNX's backend node tests for the conformance suite;
# Fashion-MNIST for training and checking our models; DejaVu fonts for explain's grid labels.
set -euo pipefail
cd "$(dirname "$0")/.."

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/camgpu-xdg-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR" 2>/dev/null || true

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

missing=()
dpkg -s libonnx-testdata >/dev/null 2>&1 || missing+=(libonnx-testdata)
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The labels of `camgpu explain`'s grid PNGs (resvg renders them with DejaVu Sans).
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build

# Dawn rejects Debian 12's own Mesa (22.3); lavapipe from bookworm-backports (25.x) works.
has_adapter() {
  node -e "import('webgpu').then(async ({ create }) => { globalThis.__gpu = create([]); const a = await globalThis.__gpu.requestAdapter(); process.exit(a ? 0 : 1); }).catch(() => process.exit(1))" 2>/dev/null
}
if ! has_adapter; then
  echo "setup: no WebGPU adapter; installing Mesa lavapipe from bookworm-backports"
  sources=/etc/apt/sources.list.d/debian.sources
  if [ ! -f "$sources" ]; then
    echo "setup: $sources not found; add bookworm-backports to your APT sources and re-run" >&2
    exit 1
  fi
  # Appends only to a line that does not have it yet, so running twice changes nothing.
  $SUDO sed -i -E '/^Suites: bookworm bookworm-updates$/ s/$/ bookworm-backports/' "$sources"
  apt_updated=0
  apt_install -t bookworm-backports mesa-vulkan-drivers
  if ! has_adapter; then
    echo "setup: still no WebGPU adapter after installing lavapipe; see README.md, "Troubleshooting"" >&2
    exit 1
  fi
fi
echo "setup: ok (WebGPU adapter found; mesa-vulkan-drivers $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null || echo none); $(chromium --version 2>/dev/null || echo 'no chromium'))"
