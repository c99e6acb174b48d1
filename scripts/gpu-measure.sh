#!/usr/bin/env bash
# The GPU measurement of issue 8 in one command, per ../shared/gpu/README.md.
#   On the build machine (no GPU):  scripts/gpu-measure.sh prepare
#     builds the CLI (.build/cli-cpu), packs .gpu/ with ../shared/gpu/pack.sh, copies pytorch_peer.py into it and
#     rehearses verify and a short bench with --device cpu.
#   On the GPU machine, from the repo root with .gpu/ copied along:  scripts/gpu-measure.sh run [OUT_DIR]
#     runs, back to back: covshift verify --device cuda --json, covshift bench --device cuda --json (mlp, cnn,
#     resnet20; record every 1 and 16; with and without gradients) and pytorch_peer.py, then tars everything into
#     OUT_DIR/gpu-results.tar.gz (OUT_DIR defaults to $OUT, else ./gpu-results). Exit code: verify's (0 = all matched).
# With the device tool: run(command="bash scripts/gpu-measure.sh run \"$OUT\"", carry=[".gpu"], timeout_s=600).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
shared="${COVSHIFT_SHARED_GPU:-$root/../shared/gpu}"

case "${1:-}" in
  prepare)
    set -e
    scripts/covshift --help > /dev/null
    bash "$shared/pack.sh" .build/cli-cpu
    cp "$shared/pytorch_peer.py" .gpu/
    echo "gpu-measure: rehearsing the commands with --device cpu (the packed app has no CPU libtorch; it needs the GPU machine's PyTorch) ..."
    scripts/covshift verify --device cpu | tail -1
    scripts/covshift bench --device cpu --models mlp --record-every 16 --gradients true --mlp-pairs 2 --json | tail -1
    du -sh .gpu
    ;;
  run)
    out="${2:-${OUT:-$root/gpu-results}}"
    mkdir -p "$out"
    [ -f .gpu/env.sh ] || { echo "gpu-measure: no .gpu/ here; run 'scripts/gpu-measure.sh prepare' on the build machine and copy .gpu/ along" >&2; exit 2; }
    # shellcheck disable=SC1091
    source .gpu/env.sh > "$out/env.txt" 2>&1
    { date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } > "$out/machine.txt" 2>&1
    start=$(date +%s)
    timeout 150 bash -c 'source .gpu/env.sh > /dev/null; app covshift.dll verify --device cuda --json' > "$out/verify.txt" 2>&1
    verify=$?
    echo "verify exit $verify after $(( $(date +%s) - start )) s" | tee -a "$out/status.txt"
    timeout 330 bash -c 'source .gpu/env.sh > /dev/null; app covshift.dll bench --device cuda --json' > "$out/bench.txt" 2> "$out/bench.err"
    echo "bench exit $? after $(( $(date +%s) - start )) s" | tee -a "$out/status.txt"
    timeout 100 python3 .gpu/pytorch_peer.py > "$out/pytorch_peer.txt" 2>&1
    echo "pytorch_peer exit $? after $(( $(date +%s) - start )) s" | tee -a "$out/status.txt"
    tail -3 "$out/verify.txt"; grep '^|' "$out/bench.txt"; tail -1 "$out/pytorch_peer.txt"
    tar -czf "$out/gpu-results.tar.gz" -C "$out" --exclude gpu-results.tar.gz .
    exit "$verify"
    ;;
  *)
    echo "usage: scripts/gpu-measure.sh prepare | run [OUT_DIR]" >&2
    exit 2
    ;;
esac
