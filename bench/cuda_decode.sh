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
source bench/cuda_run.sh
cuda_bench_init "$csv" "$B" || exit 1
# GEMV loop variants (k_gemv.cu) and programmatic dependent launch: BENCH_VARIANTS=1 measures them
# and uses the fastest variant for everything after (exported as LOP_CUDA_GEMV)
if [ -n "${BENCH_VARIANTS:-}" ]; then
    for v in 0 1 2 3; do LOP_CUDA_GEMV=$v run 7b_b1_gemv$v synth:llama-7b 1 128; done
    best_v=$(awk -F, '$1 ~ /^7b_b1_gemv[0-9]$/ && $6 != "" {print $6, substr($1, 11)}' "$csv" | sort -g | tail -1 | awk '{print $2}')
    export LOP_CUDA_GEMV=${best_v:-0}
    echo "# fastest GEMV variant: $LOP_CUDA_GEMV (used below)" >> "$csv"
    LOP_CUDA_PDL=1 run 7b_b1_pdl synth:llama-7b 1 128
fi
# (the batch-1 engine switches -- PDL, occupancy, loop variants, block rows -- are measured by cuda_b1_sweep.sh)
run 7b_b1 synth:llama-7b 1 128
run 7b_b1_nograph synth:llama-7b 1 128 --no-graphs
run 7b_b1_greedy synth:llama-7b 1 128 --temp 0
run depth4.9b_b1 synth:llama-7b:layers=23 1 128
run width4.9b_b1 synth:llama-7b:heads=21@4-29:ffn=7155@4-29 1 128
# the same with its FFN width as `lop prune --round 64` keeps it (issue 6: rounded vs not)
run width4.9b_r64_b1 synth:llama-7b:heads=21@4-29:ffn=7168@4-29 1 128
run 13b_b1 synth:llama-13b 1 128
run 7b_b256 synth:llama-7b 256 128
run 7b_b16 synth:llama-7b 16 128
# cuBLASLt's algorithms for the decode shapes as the heuristic first guesses them (as before the
# eager tuning pass ahead of the graph capture), and the hand GEMV at 8 rows (the old routing)
LOP_CUDA_DECODE_TUNE=0 run 7b_b16_untuned synth:llama-7b 16 128
run 7b_b8 synth:llama-7b 8 128
LOP_CUDA_GEMV_MAX_NB=8 run 7b_b8_gemv synth:llama-7b 8 128
LOP_CUDA_DECODE_TUNE=0 run 7b_b64_untuned synth:llama-7b 64 128
run 7b_b64 synth:llama-7b 64 128
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
# where the time goes (device time per phase, kernels launched one by one with events between)
echo "== trace: decode 7B batch 1 (no graph), 32 steps"
LOP_CUDA_TRACE=1 $LOP -q generate synth:llama-7b --device cuda --ids $ids -n 32 --ignore-eos --no-graphs 2>&1 >/dev/null | grep -E "trace|decode:"
echo "== trace: prefill 8x512"
LOP_CUDA_TRACE=1 $LOP -q generate synth:llama-7b --device cuda --ids $p512 -n 1 --batch 8 --ignore-eos 2>&1 >/dev/null | grep -E "trace|prefill:"
# kernel durations of one decode step, from the hardware (Nsight Compute), against the step time
if command -v ncu >/dev/null; then
    echo "== ncu: one decode step of 7B batch 1 (kernels launched one by one)"
    timeout 150 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
        $LOP -q generate synth:llama-7b --device cuda --ids $ids -n 2 --ignore-eos --no-graphs 2>/dev/null > /tmp/ncu.csv
    python3 - /tmp/ncu.csv <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: sys.exit(print("ncu: no data"))
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); ui = hdr.index("Metric Unit")
def clean(k):
    return k[5:] if k.startswith("void ") else k
scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
ks = [(clean(r[ki]), float(r[vi].replace(",", "")) * scale.get(r[ui].strip(), float("nan"))) for r in rows[1:]]
idx = [i for i, (k, _) in enumerate(ks) if k.startswith("sample_kernel")]
step = ks[idx[0] + 2: idx[1] + 2] if len(idx) >= 2 else ks
agg = collections.OrderedDict()
for k, us in step:
    name = k.split("(")[0].split("<")[0]
    try:
        targs = k.split("<", 1)[1].split(",")
        key = name + ("<NB " + targs[1].strip() + ", mode " + targs[2].strip() + ">" if name == "gemv_kernel" else "")
    except IndexError:
        key = name
    a = agg.setdefault(key, [0, 0.0]); a[0] += 1; a[1] += us
tot = sum(v[1] for v in agg.values())
print(f"ncu: {len(step)} kernels in one decode step, sum of kernel durations {tot:.0f} us")
for k, (n, us) in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"  {k:40s} {n:4d} launches {us:9.1f} us  ({us / n:6.1f} us each)")
PY
fi
# the issue's ratios
t1=$(awk -F, '$1=="7b_b1"{print $6}' "$csv"); td=$(awk -F, '$1=="depth4.9b_b1"{print $6}' "$csv"); tw=$(awk -F, '$1=="width4.9b_b1"{print $6}' "$csv")
[ -n "$t1" ] && [ -n "$td" ] && [ -n "$tw" ] && echo "# speedup depth4.9b/7b $(awk "BEGIN{printf \"%.3f\", $td/$t1}"), width4.9b/7b $(awk "BEGIN{printf \"%.3f\", $tw/$t1}")" >> "$csv"
echo; (column -s, -t < "$csv" 2>/dev/null || cat "$csv")
