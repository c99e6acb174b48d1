#!/usr/bin/env bash
# Makes a machine ready to build, test and run CovariateShift. Idempotent: every step checks first
# and does nothing when its requirement is already met.
#   1. .NET SDK 10 on PATH
#   2. libstdc++ of GCC 12 or newer (checked only: on GCC 12's the build edits its own copy of TorchSharp's shim)
#   3. Fashion-MNIST (Debian package dataset-fashion-mnist) unless COVSHIFT_SKIP_DATA=1
#   4. chromium (headless browser for the report test) unless COVSHIFT_SKIP_BROWSER=1
# It never adds apt sources or upgrades system libraries: steps 3 and 4 install ordinary packages of the running
# release, and each says what it will install before it does. Exits non-zero with a message saying what is missing
# and how to get it.
set -euo pipefail

say()  { printf '[bootstrap] %s\n' "$*" >&2; }
fail() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
fi
need_root() {
  # $1: what needs root, $2: how to do it by hand
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    fail "$1 needs root (or password-less sudo). Run this script as root, or do it by hand: $2"
  fi
}

# ---- 1. .NET SDK ---------------------------------------------------------------------------
if ! command -v dotnet >/dev/null 2>&1; then
  fail ".NET SDK 10 is not on PATH. Install it from https://dot.net (e.g. 'apt-get install dotnet-sdk-10.0' from Microsoft's feed) and rerun."
fi
sdk_major=$(dotnet --version 2>/dev/null | cut -d. -f1 || echo 0)
if [ "${sdk_major:-0}" -lt 10 ]; then
  fail ".NET SDK $(dotnet --version) found; version 10.0 or newer is required (global.json pins 10.0.x with roll-forward)."
fi

# ---- 2. libstdc++ (checked only; nothing is installed or changed) ------------------------------
# TorchSharp 0.107's native shim requires GLIBCXX_3.4.32 (GCC >= 13.2) for one marker symbol that nothing calls, and
# GLIBCXX_3.4.30 (GCC 12) for the rest. Where the machine's libstdc++ stops at 3.4.30 (Debian 12, Ubuntu 22.04) the
# build's libstdc++ step (src/CovariateShift/buildTransitive/CovariateShift.targets) marks that one requirement weak
# in the copy of libLibTorchSharp.so it puts in the output folder. The system and the NuGet cache stay as they are.
find_libstdcxx() {
  local p
  for p in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib/aarch64-linux-gnu/libstdc++.so.6 \
           /usr/lib64/libstdc++.so.6 /lib64/libstdc++.so.6 /usr/lib/libstdc++.so.6; do
    [ -e "$p" ] && { echo "$p"; return; }
  done
  ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}'
}
libstdcxx_note="libstdc++ OK"
if [ "$(uname -s)" = "Linux" ]; then
  lib=$(find_libstdcxx)
  if [ -z "$lib" ]; then
    fail "libstdc++.so.6 not found; install your distribution's libstdc++6 (GCC 12 or newer), then rerun."
  elif ! grep -qa 'GLIBCXX_3\.4\.30' "$lib"; then
    fail "$lib lacks GLIBCXX_3.4.30: TorchSharp 0.107 needs the libstdc++ of GCC 12 or newer (Debian 12, Ubuntu 22.04 and later have it)."
  elif ! grep -qa 'GLIBCXX_3\.4\.32' "$lib"; then
    libstdcxx_note="libstdc++ is GCC 12's: the build marks TorchSharp's GLIBCXX_3.4.32 marker weak in its output copy of the shim"
  fi
fi
if [ -e /etc/apt/sources.list.d/covshift-trixie.sources ] || [ -e /etc/apt/preferences.d/covshift-trixie-pin ]; then
  say "note: an earlier version of this script added a Debian 13 (trixie) apt source; it is no longer needed. To remove it:"
  say "      rm -f /etc/apt/sources.list.d/covshift-trixie.sources /etc/apt/preferences.d/covshift-trixie-pin && apt-get update"
  say "      (packages it upgraded stay at their Debian 13 versions; this script does not downgrade them)"
fi

# ---- 3. Fashion-MNIST -----------------------------------------------------------------------
FMNIST_DIR="${COVSHIFT_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
if [ "${COVSHIFT_SKIP_DATA:-0}" != "1" ] && [ -n "${COVSHIFT_FASHION_MNIST:-}" ] && [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  fail "COVSHIFT_FASHION_MNIST=$COVSHIFT_FASHION_MNIST has no train-images-idx3-ubyte.gz; put the four Fashion-MNIST idx .gz files there, or unset it to use Debian's dataset-fashion-mnist package."
fi
if [ "${COVSHIFT_SKIP_DATA:-0}" != "1" ] && [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  manual="put the four idx .gz files in $FMNIST_DIR (or set COVSHIFT_FASHION_MNIST to their directory), or set COVSHIFT_SKIP_DATA=1 to skip tests that need it"
  command -v apt-get >/dev/null 2>&1 || fail "Fashion-MNIST not found and apt-get is not available: $manual."
  need_root "Installing Fashion-MNIST" "apt-get install dataset-fashion-mnist; or $manual"
  if ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then
    say "changing the system: apt-get update (refreshes the package lists of the configured sources)"
    $SUDO apt-get update -qq >/dev/null
  fi
  apt-cache show dataset-fashion-mnist >/dev/null 2>&1 || fail "apt package dataset-fashion-mnist is not available here: $manual."
  say "changing the system: apt-get install dataset-fashion-mnist (Fashion-MNIST, 31 MB, into $FMNIST_DIR)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null
  [ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] || fail "dataset-fashion-mnist installed but $FMNIST_DIR/train-images-idx3-ubyte.gz is missing."
fi

# ---- 4. Chromium (the report's browser test opens the page in headless chromium) ------------------
if [ "${COVSHIFT_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || fail "chromium not found and apt-get is not available: install chromium, or set COVSHIFT_SKIP_BROWSER=1."
  need_root "Installing chromium" "apt-get install -y chromium; or set COVSHIFT_SKIP_BROWSER=1 (the browser test then fails)"
  if ! apt-cache show chromium >/dev/null 2>&1; then
    say "changing the system: apt-get update (refreshes the package lists of the configured sources)"
    $SUDO apt-get update -qq >/dev/null
  fi
  say "changing the system: apt-get install chromium (headless browser for the report's browser test; COVSHIFT_SKIP_BROWSER=1 skips it)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  command -v chromium >/dev/null 2>&1 || fail "apt-get install chromium finished but chromium is not on PATH."
fi

[ "${COVSHIFT_QUIET:-0}" = "1" ] || say "ready (.NET $(dotnet --version), ${libstdcxx_note}, Fashion-MNIST: ${FMNIST_DIR})"
