#!/usr/bin/env bash
# The prepared measurement for a lent GPU machine (issue 13), in one command:
#   scripts/gpu_bench.sh [OUT] [more `python -m milr.bench --suite gpu` options, e.g. --bandwidth-gbs 4800]
# 1. writes the GenEval reward with random weights at its real shapes (CPU, no download, 1.9 GB,
#    33 s on a 2-core CPU),
#    unless OUT/geneval-random already holds it;
# 2. runs the budgeted suite on CUDA (8 minutes by default: --budget-s): 7B, then 1B, random bf16
#    weights built on the GPU; OUT/gpu_bench.json and OUT/gpu_bench.md are rewritten after every part.
# OUT (default out/gpu_bench) is relative to the repository root. PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu_bench}
[ $# -gt 0 ] && shift
python=${PYTHON:-python}
reward="$out/geneval-random"
[ -f "$reward/geneval.yaml" ] || "$python" -m rewards.random_weights geneval --out "$reward"
exec "$python" -m milr.bench --suite gpu --device cuda --out "$out" \
    --reward-config "$reward/geneval.yaml" \
    --prompts-file data/benchmarks/geneval/evaluation_metadata.jsonl "$@"
