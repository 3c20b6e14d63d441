#!/bin/bash
# Pruning criteria timed on a 7B model on the GPU (issues 5 and 6: each depth criterion and each
# width method on synth:llama-7b with the default calibration, 10 x 128 tokens, under 60 s), and the
# CUDA trainer checked against the CPU one at full LLaMA-7B width (6 blocks, so the CPU side is quick).
# Why a script: the GPU machine runs one command per call; this leaves a CSV and the logs in $OUT.
# Usage (repository root, after a build with CUDA): bench/prune_gpu.sh   Env: LOP=build/lop OUT=/tmp/lop-out
#   MODEL=synth:llama-7b  TARGET=params=4.9B (the paper's 7B -> 4.9B pair)  CHECK=1 (the CPU comparison)
#   KINDS="depth width" (which timings to run)
set -uo pipefail
cd "$(dirname "$0")/.."
LOP=${LOP:-build/lop}
OUT=${OUT:-/tmp/lop-out}
MODEL=${MODEL:-synth:llama-7b}
TARGET=${TARGET:-params=4.9B}
CHECK=${CHECK:-1}
KINDS=${KINDS:-depth width}
mkdir -p "$OUT/prune-logs"
csv=$OUT/prune_gpu.csv
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
commit=$(cat COMMIT 2>/dev/null || git describe --always --dirty 2>/dev/null || echo unknown)
header="kind,criterion,model,target,device,scoring_s,wall_s,card,driver,commit,date"
echo "$header" > "$csv"

# one lop prune --dry-run: its "scored in X s" line and the wall time of the whole run (load,
# materialise and upload the weights, calibrate, score)
run() {
    local kind=$1 crit=$2 dev=$3 model=$4 tgt=$5 log=$OUT/prune-logs/$1-$2-$3.log
    shift 5
    local flags=(--depth "$tgt" --criterion "$crit")
    [ "$kind" = width ] && flags=(--width "$tgt" --method "$crit")
    local t0 rc scored wall
    t0=$(date +%s.%N)
    "$LOP" prune "$model" "${flags[@]}" --device "$dev" --dry-run "$@" > "$log" 2>&1
    rc=$?
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    scored=$(grep -oE 'scored in [0-9.]+ s' "$log" | grep -oE '[0-9.]+' | tail -1)
    echo "$kind,$crit,$model,$tgt,$dev,${scored:-FAILED(rc=$rc)},$wall,$card,$driver,$commit,$(date -u +%FT%TZ)" >> "$csv"
    echo "$kind $crit on $dev: scored in ${scored:-FAILED rc=$rc} s (wall $wall s)"
}

# the 7B timings first (the floors), then the full-width CPU comparison
case " $KINDS " in *" depth "*) for c in magnitude bi ppl taylor; do run depth "$c" cuda "$MODEL" "$TARGET"; done ;; esac
case " $KINDS " in *" width "*) for m in magnitude wanda-sp flap llm-pruner; do run width "$m" cuda "$MODEL" "$TARGET"; done ;; esac
cat "$csv"
if [ "$CHECK" = 1 ]; then # CUDA vs CPU at full width: the same scores (printed tables) and choice
    small="$MODEL:layers=6"
    csv=$OUT/prune_gpu_check.csv
    echo "$header" > "$csv"
    for dev in cuda cpu; do run depth taylor "$dev" "$small" 2 --no-plus; done
    for dev in cuda cpu; do run width flap "$dev" "$small" 20%; done
    for f in depth-taylor width-flap; do
        diff <(grep -E '^ +[0-9]+ ' "$OUT/prune-logs/$f-cpu.log") <(grep -E '^ +[0-9]+ ' "$OUT/prune-logs/$f-cuda.log") \
            > "$OUT/prune-logs/$f.diff" && echo "$f: CPU and CUDA tables identical" ||
            echo "$f: tables differ (see $f.diff: scores print 6 digits, so last-digit changes are fp32 order)"
    done
fi
