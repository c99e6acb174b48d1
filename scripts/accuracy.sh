#!/usr/bin/env bash
# The accuracy experiment of issue 9: Fashion-MNIST test accuracy of an MLP with batch norm (target >= 0.885; a
# published MLP 256-128-100: 0.8833) and of a CNN with batch norm (target >= 0.915; a published 2 conv + pooling + BN:
# 0.934), trained by `covshift train` on the CPU. Each run writes a full run directory (config.json, training.jsonl
# with the test accuracy after every epoch, summary.json with the best and final accuracy).
#
#   scripts/accuracy.sh mlp [OUT]    MLP 784-256-128-100-10, batch norm before ReLU, Adam 2e-3, batch 256, cosine, 8 epochs
#   scripts/accuracy.sh cnn [OUT]    zoo cnn (4 conv layers 32/64/128/256, BN, max-pooling), SGD Nesterov 0.05, cosine, 12 epochs
#
# Interrupt with Ctrl+C and continue with `scripts/covshift train --resume OUT/<mlp|cnn>`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
which="${1:-mlp}"
out="${2:-$root/runs/accuracy}"
common=(--record-every 200 --log-every 50 --seed 0 --keep-checkpoints 1)
case "$which" in
  mlp)
    "$root/scripts/covshift" train --model "$root/models/accuracy-mlp-256-128-100-batch.json" --epochs 8 --batch-size 256 \
      --optimizer adam --lr 0.002 --schedule cosine --warmup-steps 100 "${common[@]}" --out "$out/mlp"
    ;;
  cnn)
    "$root/scripts/covshift" train --model cnn --norm batch --epochs 12 --batch-size 128 --optimizer sgd --lr 0.05 --momentum 0.9 --nesterov \
      --weight-decay 0.0005 --schedule cosine --warmup-steps 200 "${common[@]}" --out "$out/cnn"
    ;;
  *) echo "usage: scripts/accuracy.sh mlp|cnn [OUT]" >&2; exit 2 ;;
esac
