#!/usr/bin/env bash
# Runs every test of the solution on a fresh machine: bootstrap (libstdc++ fix on Debian 12, Fashion-MNIST), then
# `dotnet test` on CovariateShift.sln with the CPU backend. Extra arguments go to `dotnet test`
# (e.g. scripts/test.sh --filter "FullyQualifiedName~ShiftTests"). Exits with dotnet test's exit code.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
cd "$root"
set +e
# The per-test "Passed" lines are hidden; failures, their messages and the summaries are shown.
dotnet test CovariateShift.sln -c Release -p:TorchBackend=cpu --logger "console;verbosity=normal" "$@" 2>&1 \
  | grep -v -E '^\s+Passed [A-Za-z]'
status=${PIPESTATUS[0]}
set -e
exit "$status"
