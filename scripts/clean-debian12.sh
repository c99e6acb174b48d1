#!/usr/bin/env bash
# Proves the README's set-up on a clean Debian 12 root: debootstrap bookworm into a folder, bind-mount this machine's
# .NET SDK into it (read only), copy a fresh clone of the current commit in, and run inside chroot what a user runs on
# a fresh machine: scripts/bootstrap.sh, then the README's demo (scripts/covshift train ...). Then it shows that the
# root's C library, libstdc++ and /etc/os-release are still Debian 12's and that no apt source was added.
# Too slow for CI (minutes: debootstrap, NuGet restore of TorchSharp, the build and the demo); run it by hand, as root.
#
#   sudo scripts/clean-debian12.sh                 # fresh root under /var/tmp, removed at the end
#   sudo scripts/clean-debian12.sh --keep DIR      # build the root in DIR (must not exist) and keep it
#   sudo scripts/clean-debian12.sh --tests         # also run `scripts/test.sh --fast` inside (installs chromium there)
#   sudo scripts/clean-debian12.sh --all-tests     # also run `scripts/test.sh` inside: every test, the README's second command
#
# COVSHIFT_DEMO_ARGS overrides the demo's arguments (default: the README's demo). COVSHIFT_DEBIAN_MIRROR overrides the
# mirror (default: this machine's Debian mirror, else deb.debian.org).
# Inside the root: resolv.conf and this machine's local CA certificates (/usr/local/share/ca-certificates) are copied
# in so NuGet is reachable as it is here.
# Changes to THIS machine: installs the debootstrap package if it is missing (said before it is done); creates the
# root folder; all mounts are made in a private mount namespace and unmounted on exit.
set -euo pipefail

say()  { printf '[clean-debian12] %s\n' "$*" >&2; }
fail() { printf '[clean-debian12] ERROR: %s\n' "$*" >&2; exit 1; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keep=""; tests=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) [ $# -ge 2 ] || fail "--keep needs a directory"; keep="$2"; shift 2 ;;
    --tests) tests=1; shift ;;
    --all-tests) tests=2; shift ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument '$1'; expected --keep DIR, --tests, --all-tests or --help" ;;
  esac
done
demo_args="${COVSHIFT_DEMO_ARGS:---model mlp --depth 8 --norm none batch --steps 400 --lr 0.05 --out runs/demo}"

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, mount, chroot); run it with sudo."
[ "$(uname -s)" = "Linux" ] || fail "Linux only."

# All mounts live in a private mount namespace: even if this script is killed they never outlive it.
if [ -z "${COVSHIFT_IN_PRIVATE_NS:-}" ]; then
  command -v unshare >/dev/null 2>&1 || fail "unshare (util-linux) is missing."
  args=(); [ -n "$keep" ] && args+=(--keep "$keep"); [ "$tests" = 1 ] && args+=(--tests); [ "$tests" = 2 ] && args+=(--all-tests)
  COVSHIFT_IN_PRIVATE_NS=1 exec unshare --mount --propagation private "$BASH" "${BASH_SOURCE[0]}" "${args[@]}"
fi

start=$(date +%s)
phase() { say "[$(( $(date +%s) - start )) s] $*"; }

if ! command -v debootstrap >/dev/null 2>&1; then
  say "changing this machine: apt-get install debootstrap (Debian's tool that builds the clean root)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# .NET SDK of this machine (not hard-coded: from the dotnet on PATH).
command -v dotnet >/dev/null 2>&1 || fail ".NET SDK not on PATH."
dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
[ -d "$dotnet_root/sdk" ] || fail "no sdk/ folder beside $(readlink -f "$(command -v dotnet)")."
sdk_version="$(dotnet --version)"

commit="$(git -C "$repo" rev-parse HEAD)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  say "note: the working tree has uncommitted changes; the clean root gets commit ${commit:0:12} without them"
fi

mirror="${COVSHIFT_DEBIAN_MIRROR:-}"
[ -n "$mirror" ] || mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || mirror="http://deb.debian.org/debian"

if [ -n "$keep" ]; then
  [ ! -e "$keep" ] || fail "--keep $keep already exists; give a new directory."
  mkdir -p "$keep"; base="$(cd "$keep" && pwd)"
else
  base="$(mktemp -d /var/tmp/covshift-debian12.XXXXXX)"
fi
root="$base/root"
mounts=()
cleanup() {
  local status=$? i
  for (( i=${#mounts[@]}-1; i>=0; i-- )); do umount "${mounts[$i]}" 2>/dev/null || umount -l "${mounts[$i]}" 2>/dev/null || true; done
  if [ -z "$keep" ]; then
    # Only after every mount is gone: never delete through a mount point (the SDK is mounted read only anyway).
    if ! grep -q " $base" /proc/self/mounts; then rm -rf "$base"; else say "left $base (a mount is still there)"; fi
  else
    say "kept the root in $root"
  fi
  exit "$status"
}
trap cleanup EXIT

phase "debootstrap --variant=minbase bookworm $root ($mirror); extra packages: ca-certificates libicu72 libssl3 (what the .NET SDK's own package would pull in)"
debootstrap --variant=minbase --include=ca-certificates,libicu72,libssl3 bookworm "$root" "$mirror" >"$base/debootstrap.log" 2>&1 \
  || { tail -20 "$base/debootstrap.log" >&2; fail "debootstrap failed (log: $base/debootstrap.log)"; }
libc_before=$(chroot "$root" dpkg-query -W -f='${Version}' libc6)
phase "clean root ready: libc6 $libc_before, $(chroot "$root" sh -c '. /etc/os-release; echo "$PRETTY_NAME"')"

mount -t proc proc "$root/proc"; mounts+=("$root/proc")
mkdir -p "$root$dotnet_root"
mount --bind "$dotnet_root" "$root$dotnet_root"; mounts+=("$root$dotnet_root")
mount -o remount,bind,ro "$root$dotnet_root"
ln -sf "$dotnet_root/dotnet" "$root/usr/local/bin/dotnet"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"; mounts+=("$root/dev/pts")
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# Certificate authorities this machine added locally (e.g. for a TLS-inspecting proxy on the way to NuGet): the same
# trust inside, so HTTPS to NuGet behaves as it does here.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates failed inside the root"
  say "copied this machine's local CA certificates into the root: $(cd /usr/local/share/ca-certificates && ls -- *.crt | tr '\n' ' ')"
fi

# The clone inside the root: in the home folder the root's own passwd gives its superuser, where a user would clone it.
inner_home=$(chroot "$root" getent passwd 0 | cut -d: -f6)
[ -n "$inner_home" ] || fail "the clean root's passwd names no home folder for uid 0."
inner="$inner_home/CovariateShift"
phase "fresh clone of $commit into $inner (inside the root)"
mkdir -p "$root$inner_home"
git clone -q --no-hardlinks --no-checkout "$repo" "$root$inner"
git -C "$root$inner" checkout -q --detach "$commit"

inside() {
  chroot "$root" /usr/bin/env -i HOME="$inner_home" LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 ${NUGET_CERT_REVOCATION_MODE:+NUGET_CERT_REVOCATION_MODE=$NUGET_CERT_REVOCATION_MODE} \
    "$@"
}

phase "inside: scripts/bootstrap.sh (COVSHIFT_SKIP_BROWSER=1 unless --tests: the demo needs no browser)"
skip_browser=1; [ "$tests" != 0 ] && skip_browser=0
inside bash -c "cd $inner && COVSHIFT_SKIP_BROWSER=$skip_browser scripts/bootstrap.sh"

phase "inside: scripts/covshift train $demo_args"
# shellcheck disable=SC2086
inside bash -c "cd $inner && scripts/covshift train $demo_args"

if [ "$tests" = 1 ]; then
  phase "inside: scripts/test.sh --fast"
  inside bash -c "cd $inner && scripts/test.sh --fast"
elif [ "$tests" = 2 ]; then
  phase "inside: scripts/test.sh"
  inside bash -c "cd $inner && scripts/test.sh"
fi

phase "after: what the set-up left on the clean root"
libc_after=$(chroot "$root" dpkg-query -W -f='${Version}' libc6)
inside sh -c 'dpkg -l libc6 libstdc++6 | tail -n 2; . /etc/os-release; echo "os-release: $PRETTY_NAME (VERSION_ID=$VERSION_ID)"; echo "apt sources: $(ls /etc/apt/sources.list.d/ 2>/dev/null | tr "\n" " ")$(cat /etc/apt/sources.list 2>/dev/null | grep -c "^deb") line(s) in sources.list: $(grep "^deb" /etc/apt/sources.list | tr "\n" ";")"'
shim=$(find "$root$inner/.build" -name libLibTorchSharp.so -print -quit 2>/dev/null || true)
[ -z "$shim" ] || say "output copy of the shim: ${shim#"$root"} (the build's libstdc++ step edited it; the NuGet cache copy is TorchSharp's)"
version_id=$(chroot "$root" sh -c '. /etc/os-release; echo "$VERSION_ID"')
[ "$libc_after" = "$libc_before" ] || fail "libc6 changed: $libc_before -> $libc_after"
[ "$version_id" = "12" ] || fail "/etc/os-release now says VERSION_ID=$version_id"
phase "OK: both commands succeeded on a clean Debian 12 root (.NET SDK $sdk_version); libc6 still $libc_after, VERSION_ID=$version_id"
