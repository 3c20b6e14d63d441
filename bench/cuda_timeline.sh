#!/bin/bash
# Where a batch-1 decode step's time goes inside the CUDA graph (issue 3): runs one generation on a
# `make TIMELINE=1` build (src/runtime/cuda/timeline.cuh: every warp stamps %globaltimer at its start
# and end, for one logged step) and turns the log into one line per kernel launch — start, duration,
# the gap since the previous launch ended, how late the last warp started (ramp) and finished
# (tail) — and a summary per kind of launch, averaged over the layers.
# Usage: bench/cuda_timeline.sh OUTDIR BUILD_TL [SPEC] [BATCH] [ENV settings...]
#   BUILD_TL: a build made with `make TIMELINE=1 BUILD=BUILD_TL`. Writes OUTDIR/timeline-NAME.csv
#   (raw warps), OUTDIR/launches-NAME.txt and prints the summary. NAME = TL_NAME or "base".
set -uo pipefail
cd "$(dirname "$0")/.."
out=$1 B=$2 spec=${3:-synth:llama-7b} batch=${4:-1}
shift $(( $# < 4 ? $# : 4 ))
name=${TL_NAME:-base}
mkdir -p "$out"
ids=1,450,4955,310,278,4223,4086,16410,411,278,18647,310
raw=$out/timeline-$name.csv
env "$@" LOP_TIMELINE="$raw" LOP_TIMELINE_STEP=${TL_STEP:-64} "$B/lop" -q generate "$spec" --device cuda --ids $ids \
    -n 128 --batch "$batch" --ignore-eos --temp 1 --top-k 50 --top-p 0.95 --seed 1 2>&1 >/dev/null | grep -v '^$'
[ -s "$raw" ] || { echo "no timeline written ($raw)"; exit 1; }

# launches: sort warps by start; a new launch begins when the kernel id changes or a warp starts
# after every warp so far has ended. Kernel ids: timeline.cuh (GEMV = 16 + 2 mode + xn; modes
# store 0, acc 1, swiglu 2, rope 3). A residual product (acc) after attention is o, after swiglu down.
tail -n +2 "$raw" | sort -t, -k5,5n | awk -F, -v launches="$out/launches-$name.txt" '
function kname(k, prev) {
    if (k == 1) return "embed"; if (k == 2) return "rmsnorm"; if (k == 3) return "attention";
    if (k == 4) return "sample";
    if (k == 16 || k == 17) return "head";
    if (k == 18 || k == 19) return prev == "gate_up" ? "down" : "o";
    if (k == 20 || k == 21) return "gate_up"; if (k == 22 || k == 23) return "qkv";
    return "k" k
}
function flush(   p50, p90) {
    if (cnt == 0) return
    nm = kname(kid, prevname)
    qs(e, 1, cnt) # the end times of the warps, ascending (mawk has no asort)
    p90 = e[int(0.9 * cnt) > 0 ? int(0.9 * cnt) : 1]; p50 = e[int(0.5 * cnt) > 0 ? int(0.5 * cnt) : 1]
    gap = nl ? s0 - prev_end : 0
    printf "%4d %-9s warps %5d start %8.2f dur %7.2f gap %5.2f last_start %6.2f p50_end %6.2f p90_end %6.2f tail %5.2f\n", \
        nl, nm, cnt, s0 / 1e3, (emax - s0) / 1e3, gap / 1e3, (smax - s0) / 1e3, (p50 - s0) / 1e3, (p90 - s0) / 1e3, \
        (emax - p90) / 1e3 > launches
    K[nm]++; D[nm] += emax - s0; G[nm] += gap; R[nm] += smax - s0; T[nm] += emax - p90; W[nm] += cnt
    if (!(nm in order)) order[nm] = ++n_order
    tot_gap += gap; tot_dur += emax - s0
    prev_end = emax; prevname = nm; nl++
    cnt = 0
}
function qs(a, lo, hi,   i, j, p, t) {
    if (lo >= hi) return
    p = a[int((lo + hi) / 2)]; i = lo; j = hi
    while (i <= j) { while (a[i] < p) i++; while (a[j] > p) j--; if (i <= j) { t = a[i]; a[i] = a[j]; a[j] = t; i++; j-- } }
    qs(a, lo, j); qs(a, i, hi)
}
{
    k = $1 + 0; t0 = $5 + 0; t1 = $6 + 0
    if (cnt > 0 && (k != kid || t0 >= emax)) flush()
    if (cnt == 0) { kid = k; s0 = t0; smax = t0; emax = t1; if (first == "") first = t0 }
    cnt++; e[cnt] = t1; if (t0 > smax) smax = t0; if (t1 > emax) emax = t1
    last = emax
}
END {
    flush()
    printf "step %.2f us: %d launches, busy %.2f us, gaps %.2f us\n", (last - first) / 1e3, nl, tot_dur / 1e3, tot_gap / 1e3
    printf "%-9s %6s %9s %9s %8s %8s %8s %7s\n", "launch", "count", "mean_us", "total_us", "gap_us", "ramp_us", "tail_us", "warps"
    for (nm in order) names[order[nm]] = nm
    for (i = 1; i <= n_order; i++) { nm = names[i]
        printf "%-9s %6d %9.2f %9.1f %8.2f %8.2f %8.2f %7d\n", nm, K[nm], D[nm] / K[nm] / 1e3, D[nm] / 1e3, G[nm] / K[nm] / 1e3, \
            R[nm] / K[nm] / 1e3, T[nm] / K[nm] / 1e3, W[nm] / K[nm] }
}' | tee "$out/summary-$name.txt"
