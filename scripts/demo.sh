#!/bin/sh
# `make demo`: the main job end to end on the embedded default, SmolLM2-135M-Instruct. Fetch the model,
# generate from it, prune it by depth (BI, 20 %: 8 of 30 blocks) and by width (FLAP, 20 %: heads and FFN
# channels, a different width per layer), benchmark Original / Width / Depth (the GPU when one is present:
# the paper's grid; else the CPU over a reduced grid), draw the figure, and print a short evaluation of
# the three beside it. Without the data folder (calibration and evaluation text; LOP_DATA) the pruned
# models are synthetic models of the same shapes and the evaluation is skipped. Takes a few minutes on a
# 2-core CPU; everything lands in BUILD/demo (pruned checkpoints are reused by a second run).
set -e
BUILD=${1:-build}
LOP=$BUILD/lop
out=$BUILD/demo
data=${LOP_DATA:-../shared/data}
mkdir -p "$out"
gguf=$(scripts/fetch_smollm2.sh)

echo "== lop info $gguf"
"$LOP" info "$gguf"
echo
echo "== lop generate (greedy, 48 tokens)"
"$LOP" generate "$gguf" -p "The three most important things about gravity are" -n 48
echo
echo "== lop generate (batch 4, sampled: temp 0.8, top-k 50, top-p 0.95, seed 1)"
"$LOP" generate "$gguf" -p "Once upon a time" -n 32 --batch 4 --temp 0.8 --top-k 50 --top-p 0.95 --seed 1
echo

# ---- the three models
prune() { # kind dir args...
    kind=$1 dir=$2
    shift 2
    if [ -f "$dir/pruning.json" ]; then
        echo "== $kind-pruned model: $dir (kept from an earlier run)"
        return
    fi
    rm -rf "$dir"
    echo "== lop prune $gguf $* -o $dir"
    "$LOP" prune "$gguf" "$@" --calib "$data/austen" -o "$dir"
    echo
}
if [ -d "$data/austen" ]; then
    depth=$out/depth-bi-20 width=$out/width-flap-20
    prune depth "$depth" --depth 20% --criterion bi
    prune width "$width" --width 20% --method flap
    labels="Original SmolLM2-135M,Width FLAP 20%,Depth BI 20%"
    real=1
else
    echo "== no calibration text at $data/austen (set LOP_DATA): synthetic models of the pruned shapes"
    depth=synth:smollm2-135m:layers=22 width=synth:smollm2-135m:heads=6:ffn=1145
    labels="Original SmolLM2-135M,Width 20% (synthetic),Depth 20% (synthetic)"
    real=0
fi

# ---- benchmark and figure
bench() { # device extra-args...
    dev=$1
    shift
    "$LOP" bench "$gguf" "$width" "$depth" --labels "$labels" --device "$dev" --out "$out/bench" "$@"
}
echo "== lop bench: Original / Width / Depth"
evdev=cpu
if nvidia-smi -L >/dev/null 2>&1 && bench cuda; then
    metric=util evdev=cuda
else
    echo "(no usable GPU: the CPU over batch 1-16 x length 16-128, one timed run per cell)"
    bench cpu --batch 1,2,4,8,16 --len 16,32,64,128 --warmup 1 --runs 1
    metric=throughput
fi
echo
figure="figure: $out/figure.png"
"$LOP" plot "$out/bench.json" -o "$out/figure.png" --metric "$metric" --lengths 128,$([ "$metric" = util ] && echo 512 || echo 64) || {
    echo "(figure not drawn; its gnuplot script and data are in $out)"
    figure="figure not drawn: $out/figure.gp"
}
echo

# ---- short evaluation of the three (full runs: docs/eval.md, bench/eval/)
evals=""
if [ "$real" = 1 ] && [ -f "$data/wikitext2/wiki.test.raw" ] && [ -d "$data/zeroshot" ]; then
    i=0
    for m in "$gguf" "$width" "$depth"; do
        i=$((i + 1))
        echo "== lop eval $m --device $evdev (short: 32 WikiText-2 windows of 128 tokens, 40 items per zero-shot task)"
        "$LOP" eval "$m" --ppl "$data/wikitext2/wiki.test.raw" --ctx 128 --ppl-windows 32 --tasks all \
            --data "$data/zeroshot" --limit 40 --device "$evdev" | tee "$out/eval-$i.txt"
        echo
    done
    evals=1
else
    echo "== lop eval skipped: no evaluation data at $data (set LOP_DATA to the folder holding wikitext2/ and zeroshot/)"
fi

# ---- the summary beside the figure
echo "== Original vs Width vs Depth  ($figure; results: $out/bench.csv, $out/bench.json)"
printf '%-24s %12s %12s %12s %11s %13s\n' model parameters "tok/s B=1" "tok/s B=16" "PPL ctx128" "zero-shot avg"
i=0
echo "$labels" | tr ',' '\n' | while read -r label; do
    i=$((i + 1))
    case $i in 1) m=$gguf ;; 2) m=$width ;; *) m=$depth ;; esac
    params=$("$LOP" info "$m" | sed -n 's/^parameters *\([0-9,]*\).*/\1/p')
    tps() { awk -F, -v l="\"$label\"" -v b="$1" '$1 == l && $3 == b && $4 == 128 && $6 == "ok" {printf "%.1f", $10}' "$out/bench.csv"; }
    ppl=- avg=-
    if [ -n "$evals" ]; then
        ppl=$(awk '$1 == 128 && NF >= 6 {print $4}' "$out/eval-$i.txt")
        avg=$(awk '$1 == "average" {print $2}' "$out/eval-$i.txt")
    fi
    printf '%-24s %12s %12s %12s %11s %13s\n' "$label" "$params" "$(tps 1)" "$(tps 16)" "$ppl" "$avg"
done
