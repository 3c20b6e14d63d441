#!/bin/bash
# The paper's efficiency figure on this machine's GPU: lop bench over the full grid for a model
# family (Original vs Width- vs Depth-pruned of equal size, synthetic weights: no downloads), then
# lop plot. Results land in OUTDIR (default bench/figure/<card>): <family>.csv/.json, the figure
# (.png and .svg) with its gnuplot script and data.
#   bench/figure.sh 7b|13b [OUTDIR] [extra lop bench options, e.g. --runs 5 --batch 1,2,4]
# Env: ONLY="original width depth" (a subset: each model its own lop bench, <family>-<role>.json, so
#   several GPUs can share a family: CUDA_VISIBLE_DEVICES=1 ONLY=width ...; the plot takes every
#   <family>*.json in OUTDIR)   PLOT=0 (no plot; e.g. while other roles still run)
# Expects a built build/lop with the CUDA backend (scripts/gpu_check.sh build does that on the
# GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:?usage: bench/figure.sh 7b|13b [OUTDIR] [lop bench options]}
shift
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '_' || echo gpu)
out=${1:-bench/figure/${card:-gpu}}
[ $# -gt 0 ] && shift
mkdir -p "$out"
LOP=${LOP:-build/lop}
case "$family" in
7b) # LLaMA-7B (6.7B) vs the paper's 4.9B models: 9 of 32 blocks removed; LLM-Pruner shape on blocks 4..29
    models=(synth:llama-7b synth:llama-7b:heads=21@4-29:ffn=7155@4-29 synth:llama-7b:layers=23)
    labels="Original 6.7B,Width 4.9B,Depth 4.9B" ;;
13b) # Vicuna-13B vs 9.5B: 11 of 40 blocks removed; uniform width on blocks 4..37 (27 of 40 heads, FFN 9345)
    models=(synth:vicuna-13b synth:vicuna-13b:heads=27@4-37:ffn=9345@4-37 synth:vicuna-13b:drop=20-30)
    labels="Original 13B,Width 9.5B,Depth 9.5B" ;;
*) echo "family must be 7b or 13b" >&2; exit 2 ;;
esac
roles=(original width depth)
IFS=, read -r -a label_list <<< "$labels"
if [ -z "${ONLY:-}" ]; then
    "$LOP" bench "${models[@]}" --labels "$labels" --device cuda --out "$out/$family" "$@"
else
    for i in 0 1 2; do
        case " $ONLY " in *" ${roles[$i]} "*)
            "$LOP" bench "${models[$i]}" --labels "${label_list[$i]}" --device cuda --out "$out/$family-${roles[$i]}" "$@" ;;
        esac
    done
fi
[ "${PLOT:-1}" = 1 ] || exit 0
results=()
for f in "$out/$family.json" "$out/$family"-{original,width,depth}.json; do [ -f "$f" ] && results+=("$f"); done
"$LOP" plot "${results[@]}" -o "$out/$family-util.png"
"$LOP" plot "${results[@]}" -o "$out/$family-util.svg"
"$LOP" plot "${results[@]}" -o "$out/$family-mbu.png" --metric mbu --kind heatmap
