#!/bin/bash
# Where cuBLASLt starts to beat the hand GEMV in decode (issue 3; the figure showed batch 8 slower
# than batch 16). For each model and batch 2..8: a decode of the paper's protocol with the hand GEMV
# for every product (LOP_CUDA_GEMV_MAX_NB=8, the default) and with cuBLASLt for every product
# (LOP_CUDA_GEMV_MAX_NB=0), ms per step into a CSV. Run on the GPU machine after a build.
# Usage: bench/cuda_gemv_crossover.sh OUT.csv [BUILD]   Env: MODELS, BATCHES, L (default 64)
set -uo pipefail
cd "$(dirname "$0")/.."
csv=${1:-/tmp/gemv_crossover.csv}
B=${2:-build}
MODELS=${MODELS:-synth:llama-7b synth:llama-13b}
BATCHES=${BATCHES:-1 2 3 4 5 6 8}
L=${L:-64}
ids=1,450,4955,310,278,4223,4086,16410,411,278,18647,310
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "# gpu=$gpu; commit=$(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null); date=$(date -u +%FT%TZ); L=$L, 1 warm-up + 3 runs, median" > "$csv"
echo "model,batch,gemv_max_nb,ms_per_step,tok_per_s" >> "$csv"
for m in $MODELS; do
    for b in $BATCHES; do
        for nb in 8 0; do
            line=$(LOP_CUDA_GEMV_MAX_NB=$nb $B/lop -q generate "$m" --device cuda --ids $ids -n "$L" --batch "$b" --ignore-eos \
                --temp 1 --top-k 50 --top-p 0.95 --seed 1 --warmup 1 --runs 3 2>&1 >/dev/null | grep '^decode:')
            ms=$(echo "$line" | sed -E 's/.*: ([0-9.]+) ms\/token step.*/\1/')
            tps=$(echo "$line" | sed -E 's/.*, ([0-9.]+) tok\/s.*/\1/')
            echo "$m,$b,$nb,${ms:-FAILED},${tps:-}" | tee -a "$csv"
        done
    done
done
