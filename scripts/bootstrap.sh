#!/usr/bin/env bash
# Makes a machine ready to build, test and run CovariateShift. Idempotent: every step checks first
# and does nothing when its requirement is already met.
#   1. .NET SDK 10 on PATH
#   2. libstdc++ with GLIBCXX_3.4.32 (TorchSharp 0.107's native shim needs it; Debian 12 lacks it)
#   3. Fashion-MNIST (Debian package dataset-fashion-mnist) unless COVSHIFT_SKIP_DATA=1
#   4. chromium (headless browser for the report test) unless COVSHIFT_SKIP_BROWSER=1
# Exits non-zero with a message saying what is missing and how to get it.
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

os_id=""; os_version=""
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  os_id="${ID:-}"; os_version="${VERSION_ID:-}"
fi

# ---- 1. .NET SDK ---------------------------------------------------------------------------
if ! command -v dotnet >/dev/null 2>&1; then
  fail ".NET SDK 10 is not on PATH. Install it from https://dot.net (e.g. 'apt-get install dotnet-sdk-10.0' from Microsoft's feed) and rerun."
fi
sdk_major=$(dotnet --version 2>/dev/null | cut -d. -f1 || echo 0)
if [ "${sdk_major:-0}" -lt 10 ]; then
  fail ".NET SDK $(dotnet --version) found; version 10.0 or newer is required (global.json pins 10.0.x with roll-forward)."
fi

# ---- 2. libstdc++ GLIBCXX_3.4.32 ------------------------------------------------------------
find_libstdcxx() {
  local p
  for p in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib64/libstdc++.so.6 /usr/lib/libstdc++.so.6 \
           /usr/lib/aarch64-linux-gnu/libstdc++.so.6; do
    [ -e "$p" ] && { echo "$p"; return; }
  done
  ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}'
}
has_glibcxx() {
  local lib; lib=$(find_libstdcxx)
  [ -n "$lib" ] && grep -qa 'GLIBCXX_3\.4\.32' "$lib"
}

if [ "$(uname -s)" = "Linux" ] && ! has_glibcxx; then
  if [ "$os_id" = "debian" ] && [ "${os_version%%.*}" = "12" ]; then
    need_root "Upgrading libstdc++6 from Debian 13 (trixie)" \
      "add a trixie apt source pinned to priority 100, then 'apt-get install -t trixie libstdc++6' (see README, 'Debian 12')"
    say "libstdc++ lacks GLIBCXX_3.4.32 (needed by TorchSharp); installing libstdc++6 from Debian 13 (trixie), pinned low"
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
    $SUDO tee /etc/apt/sources.list.d/covshift-trixie.sources >/dev/null <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    $SUDO tee /etc/apt/preferences.d/covshift-trixie-pin >/dev/null <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t trixie --no-install-recommends libstdc++6 >/dev/null
    has_glibcxx || fail "libstdc++6 was upgraded but GLIBCXX_3.4.32 is still missing; check 'apt-cache policy libstdc++6'."
    say "libstdc++ upgraded: $(apt-cache policy libstdc++6 2>/dev/null | awk '/Installed/{print $2}')"
  elif [ "$os_id" = "ubuntu" ] && [ "${os_version%%.*}" = "22" ]; then
    fail "libstdc++ lacks GLIBCXX_3.4.32 (TorchSharp 0.107 needs GCC >= 13.2's libstdc++). On Ubuntu 22.04: 'add-apt-repository ppa:ubuntu-toolchain-r/test && apt-get install libstdc++6', then rerun."
  else
    fail "libstdc++ lacks GLIBCXX_3.4.32 (TorchSharp 0.107 needs GCC >= 13.2's libstdc++). Install a newer libstdc++6 (Ubuntu 24.04+, Debian 13+ and Fedora 39+ already have it), then rerun."
  fi
fi

# ---- 3. Fashion-MNIST -----------------------------------------------------------------------
FMNIST_DIR="${COVSHIFT_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
if [ "${COVSHIFT_SKIP_DATA:-0}" != "1" ] && [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  manual="put the four idx .gz files in $FMNIST_DIR (or set COVSHIFT_FASHION_MNIST to their directory), or set COVSHIFT_SKIP_DATA=1 to skip tests that need it"
  command -v apt-get >/dev/null 2>&1 || fail "Fashion-MNIST not found and apt-get is not available: $manual."
  need_root "Installing Fashion-MNIST" "apt-get install dataset-fashion-mnist; or $manual"
  if ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then $SUDO apt-get update -qq >/dev/null; fi
  apt-cache show dataset-fashion-mnist >/dev/null 2>&1 || fail "apt package dataset-fashion-mnist is not available here: $manual."
  say "installing Fashion-MNIST (apt package dataset-fashion-mnist)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null
  [ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] || fail "dataset-fashion-mnist installed but $FMNIST_DIR/train-images-idx3-ubyte.gz is missing."
fi

# ---- 4. Chromium (the report's browser test opens the page in headless chromium) ------------------
if [ "${COVSHIFT_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || fail "chromium not found and apt-get is not available: install chromium, or set COVSHIFT_SKIP_BROWSER=1."
  need_root "Installing chromium" "apt-get install -y chromium; or set COVSHIFT_SKIP_BROWSER=1 (the browser test then fails)"
  if ! apt-cache show chromium >/dev/null 2>&1; then $SUDO apt-get update -qq >/dev/null; fi
  say "installing chromium (apt package chromium, for the report's browser test)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  command -v chromium >/dev/null 2>&1 || fail "apt-get install chromium finished but chromium is not on PATH."
fi

[ "${COVSHIFT_QUIET:-0}" = "1" ] || say "ready (.NET $(dotnet --version), libstdc++ OK, Fashion-MNIST: ${FMNIST_DIR})"
