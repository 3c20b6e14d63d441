#!/bin/bash
# CUDA benchmark of issue 3 (run on the GPU machine, by scripts/gpu_check.sh or alone after a build):
# the paper's protocol -- 12-token prompt repeated over the batch, exactly L new tokens (--ignore-eos),
# top-k 50 / top-p 0.95 sampling on the GPU, 1 warm-up + 3 timed runs, median decode -- for
# LLaMA-7B, the depth-pruned 4.9B (23 blocks), the width-pruned 4.9B (21 heads / FFN 7155 in blocks
# 4..29) and LLaMA-13B at batch 1, LLaMA-7B at batch 256, and prefill of 8 x 512 tokens; the
# ceilings (streaming-read bandwidth, cuBLAS fp16 GEMM rate) are measured in the same call.
# Usage: bench/cuda_decode.sh OUT.csv [BUILD]   (BUILD holds lop and cuda_bw; default build)
set -uo pipefail
cd "$(dirname "$0")/.."
csv=${1:-bench/cuda/results.csv}
B=${2:-build}
LOP=$B/lop
ids=1,450,4955,310,278,4223,4086,16410,411,278,18647,310
samp="--temp 1 --top-k 50 --top-p 0.95 --seed 1"
bw_out=$($B/cuda_bw) || { echo "cuda_bw failed"; exit 1; }
echo "$bw_out"
read_bw=$(echo "$bw_out" | awk '$1=="read_GBps"{print $2}')
gemm=$(echo "$bw_out" | awk '$1=="gemm_7b_layer_mix_TFLOPs"{print $2}')
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
cuda=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
commit=$(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "# gpu=$gpu; cuda=$cuda; commit=$commit; read_GBps=$read_bw; cublas_fp16_gemm_TFLOPs=$gemm; date=$(date -u +%FT%TZ)" > "$csv"
echo "case,model,batch,new_tokens,ms_per_step,tok_per_s,achieved_GBps,pct_of_read_bw,prefill_ms,plan_GiB" >> "$csv"

run() { # name spec batch L extra...
    local name=$1 spec=$2 b=$3 L=$4; shift 4
    local out
    out=$($LOP -q generate "$spec" --device cuda --ids $ids -n "$L" --batch "$b" --ignore-eos $samp --warmup 1 --runs 3 "$@" 2>&1 >/dev/null)
    local rc=$?
    echo "== $name: $spec batch $b L $L $*"
    echo "$out"
    if [ $rc -ne 0 ]; then echo "$name,$spec,$b,$L,FAILED,,,,," >> "$csv"; return; fi
    local line ms tps gbs pct pre plan
    line=$(echo "$out" | grep '^decode:')
    ms=$(echo "$line" | sed -E 's/.*: ([0-9.]+) ms\/token step.*/\1/')
    tps=$(echo "$line" | sed -E 's/.*, ([0-9.]+) tok\/s.*/\1/')
    gbs=$(echo "$line" | sed -E 's/.*, ([0-9.]+) GB\/s.*/\1/')
    pct=$(awk "BEGIN{printf \"%.1f\", 100*$gbs/$read_bw}")
    pre=$(echo "$out" | sed -n 's/.*prefill median \([0-9.]*\) ms.*/\1/p')
    plan=$(echo "$out" | sed -n 's/^plan:.* = \([0-9.]*\) GiB.*/\1/p')
    echo "$name,$spec,$b,$L,$ms,$tps,$gbs,$pct,$pre,$plan" >> "$csv"
}
run 7b_b1 synth:llama-7b 1 128
run 7b_b1_nograph synth:llama-7b 1 128 --no-graphs
run 7b_b1_greedy synth:llama-7b 1 128 --temp 0
run depth4.9b_b1 synth:llama-7b:layers=23 1 128
run width4.9b_b1 synth:llama-7b:heads=21@4-29:ffn=7155@4-29 1 128
run 13b_b1 synth:llama-13b 1 128
run 7b_b256 synth:llama-7b 256 128
run 7b_b16 synth:llama-7b 16 128
# prefill 8 x 512: a 512-token prompt, one new token
p512=$(seq 1 512 | awk '{printf "%s%d", (NR>1?",":""), 100+($1*7919)%31000}')
pout=$($LOP -q generate synth:llama-7b --device cuda --ids $p512 -n 1 --batch 8 --ignore-eos --warmup 1 --runs 3 2>&1 >/dev/null)
echo "== prefill 8x512"; echo "$pout"
pms=$(echo "$pout" | sed -n 's/.*prefill median \([0-9.]*\) ms.*/\1/p')
# FLOPs: 2 x non-embedding params x tokens + attention (QK^T and PV: 4 x hd x heads x layers x causal pairs)
pflops=$(awk "BEGIN{ne=6738415616-2*32000*4096; pairs=8*512*513/2; print 2*ne*4096 + 4*4096*32*pairs}")
prate=$(awk "BEGIN{printf \"%.1f\", $pflops/($pms*1e9)}")
ppct=$(awk "BEGIN{printf \"%.1f\", 100*$prate/$gemm}")
echo "prefill_8x512,synth:llama-7b,8,1,,,,,${pms},," >> "$csv"
echo "# prefill_8x512: ${pms} ms = ${prate} TFLOP/s = ${ppct}% of cuBLAS ${gemm} TFLOP/s" >> "$csv"
# the issue's ratios
t1=$(awk -F, '$1=="7b_b1"{print $6}' "$csv"); td=$(awk -F, '$1=="depth4.9b_b1"{print $6}' "$csv"); tw=$(awk -F, '$1=="width4.9b_b1"{print $6}' "$csv")
[ -n "$t1" ] && [ -n "$td" ] && [ -n "$tw" ] && echo "# speedup depth4.9b/7b $(awk "BEGIN{printf \"%.3f\", $td/$t1}"), width4.9b/7b $(awk "BEGIN{printf \"%.3f\", $tw/$t1}")" >> "$csv"
echo; column -s, -t < "$csv"
