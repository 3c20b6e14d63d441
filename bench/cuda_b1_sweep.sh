#!/bin/bash
# Batch-1 decode experiments of issue 3 (run on the GPU machine after a build, by
# scripts/gpu_check.sh b1sweep or alone): LLaMA-7B at batch 1, L = 128, under each engine switch
# (bench/cuda/NOTES.md says what each one is for), the list run twice, interleaved, so that drift
# of the machine shows as a spread rather than as a difference between switches; then the best
# setting against the defaults on LLaMA-13B and on the depth- and width-pruned 4.9B shapes.
# Usage: bench/cuda_b1_sweep.sh OUT.csv [BUILD]   (SWEEP="name=VARS;..." replaces the list, ROUNDS=n the 2 rounds)
set -uo pipefail
cd "$(dirname "$0")/.."
B=${2:-build}
source bench/cuda_run.sh
cuda_bench_init "${1:-bench/cuda/b1-sweep.csv}" "$B" || exit 1

# name=variables (empty: the defaults). Runs 11 and 15-16 (H200, bench/cuda/NOTES.md 14, 19) measured
# the switches; the list keeps the defaults before them (fma, fma_novpair), one setting of each
# family that lost and is still in the code, the defaults before 24 (prev: the FAST sampler and the
# decode attention's DEC_GMAX kernels), the ONE attention in 16 warps (one16), the FAST sampler
# (fast), the normalised-input products in blocks of 4 and 16 warps (xw4, xw16), the LM head's
# RMSNorm as its own launch (hxn0, the default before 25), the decode attention without its
# speculative first K/V round (spec0, the default before 25), PDL with full grids (pdlnb), the
# decode attention's grid before 26 (ag0) and each step's tokens copied back (hm0, before 26)
default_sweep="base=;\
prev=LOP_CUDA_SAMPLE_FAST=1 LOP_CUDA_ATTN_ONE=0;\
hxn0=LOP_CUDA_HEAD_XN=0;\
spec0=LOP_CUDA_ATTN_SPEC=0;\
ag0=LOP_CUDA_ATTN_GRIDCUT=0;\
hm0=LOP_CUDA_HIST_MAPPED=0;\
pdlnb=LOP_CUDA_PDL=1 LOP_CUDA_GEMV_BALANCE=0;\
one16=LOP_CUDA_ATTN_ONE=16;\
fast=LOP_CUDA_SAMPLE_FAST=1;\
xw4=LOP_CUDA_XN_WARPS=4;\
xw16=LOP_CUDA_XN_WARPS=16;\
pf2=LOP_CUDA_PREFETCH_KB=2;\
fma=LOP_CUDA_GEMV_MMA=0;\
fma_novpair=LOP_CUDA_GEMV_MMA=0 LOP_CUDA_VPAIR=0 LOP_CUDA_GEMV_BALANCE=0;\
acc0=LOP_CUDA_GEMV_ACC=0;\
pdl=LOP_CUDA_PDL=1"
IFS=';' read -r -a sweep <<< "${SWEEP:-$default_sweep}"

for round in $(seq "${ROUNDS:-2}"); do
    for entry in "${sweep[@]}"; do
        RUN_ENV=${entry#*=} run "7b_b1_${entry%%=*}_r$round" synth:llama-7b 1 128
    done
done

# mean tok/s of each setting over its rounds, best first
summary=$(awk -F, '$1 ~ /^7b_b1_.*_r[0-9]+$/ && $6 != "" {
        n = $1; sub(/^7b_b1_/, "", n); sub(/_r[0-9]+$/, "", n)
        s[n] += $6; c[n]++; if (!(n in lo) || $6 < lo[n]) lo[n] = $6; if ($6 > hi[n]) hi[n] = $6 }
    END { for (n in s) printf "%s %.1f %.1f %.1f\n", n, s[n] / c[n], lo[n], hi[n] }' "$csv" | sort -k2,2 -g -r)
echo "== 7B batch 1, tok/s: setting, mean, min, max"
echo "$summary"
echo "$summary" | sed 's/^/# 7b_b1 tok\/s (setting mean min max): /' >> "$csv"

best=$(echo "$summary" | head -1 | cut -d' ' -f1)
if [ -n "$best" ] && [ "$best" != base ]; then
    for entry in "${sweep[@]}"; do [ "${entry%%=*}" = "$best" ] && best_env=${entry#*=}; done
    echo "# best setting: $best ($best_env) against the defaults on the other shapes" >> "$csv"
    for shape in "13b synth:llama-13b" "depth4.9b synth:llama-7b:layers=23" "width4.9b synth:llama-7b:heads=21@4-29:ffn=7155@4-29"; do
        set -- $shape
        RUN_ENV= run "$1_b1_base" "$2" 1 128
        RUN_ENV=$best_env run "$1_b1_$best" "$2" 1 128
    done
fi
echo; (column -s, -t < "$csv" 2>/dev/null || cat "$csv")
