#!/usr/bin/env bash
# Runs the tests of the solution on a fresh machine: bootstrap (libstdc++ fix on Debian 12, Fashion-MNIST), then
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
set +e
# The per-test "Passed" lines are hidden; failures, their messages and the summaries are shown.
dotnet test CovariateShift.sln -c Release -p:TorchBackend=cpu --logger "console;verbosity=normal" "${args[@]}" 2>&1 \
  | grep -v -E '^\s+Passed [A-Za-z]'
status=${PIPESTATUS[0]}
set -e
exit "$status"
