#!/usr/bin/env bash
# Runs the tests of the solution on a fresh machine: bootstrap (checks, Fashion-MNIST, chromium), then
# `dotnet test` on CovariateShift.sln with the CPU backend. Exits with dotnet test's exit code.
#
#   scripts/test.sh            every test (what CI runs)
#   scripts/test.sh --fast     the fast tier for inner loops (< 1 minute after a build): skips [Trait("Category", "Slow")]
#
# Further arguments go to `dotnet test` (e.g. scripts/test.sh --filter "FullyQualifiedName~ShiftTests").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
args=()
for a in "$@"; do
  if [[ "$a" == "--fast" ]]; then args+=(--filter "Category!=Slow"); else args+=("$a"); fi
done
"$root/scripts/bootstrap.sh"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
cd "$root"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# The per-test "Passed" lines are hidden; failures, their messages and the summaries are shown.
dotnet test CovariateShift.sln -c Release -p:TorchBackend=cpu --logger "console;verbosity=normal" "${args[@]}" 2>&1 \
  | grep -v -E '^\s+Passed [A-Za-z]' | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all test projects (from each project's "Passed: N" / "Failed: N" / "Skipped: N" summary).
awk '/^[[:space:]]+Passed:[[:space:]]+[0-9]+/ {p += $2} /^[[:space:]]+Failed:[[:space:]]+[0-9]+/ {f += $2}
     /^[[:space:]]+Skipped:[[:space:]]+[0-9]+/ {s += $2}
     END {printf "%d passed, %d failed, %d skipped\n", p, f, s}' "$log"
# The failed tests again, each with the first line of its message, so that a log cut to its last lines still names them.
if grep -q -E '^[[:space:]]+Failed [A-Za-z]' "$log"; then
  echo "Failed tests:"
  awk '/^[[:space:]]+Failed [A-Za-z]/ {if (want) print "  " name; sub(/^[[:space:]]+/, ""); name = $0; want = 1; next}
       want && /^[[:space:]]+Error Message:/ {getline m; sub(/^[[:space:]]+/, "", m); print "  " name ": " substr(m, 1, 300); want = 0; next}
       want && /^[[:space:]]+(Passed|Failed|Skipped) / {print "  " name; want = 0}
       END {if (want) print "  " name}' "$log"
fi
exit "$status"
