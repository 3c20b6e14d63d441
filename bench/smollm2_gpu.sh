#!/bin/bash
# SmolLM2-135M results of issues 5, 6 and 7 on one GPU machine: WikiText-2 PPL (ctx 128 and 2048, whole
# test set) and the seven zero-shot tasks of the original and of the 16 pruned models (depth: 4 criteria,
# width: 4 methods, 20 % and 35 %), plus the seven-task evaluation of the original timed alone.
# Why a script: this takes hours on CPU, and the GPU machine runs commands of at most 10 minutes and
# returns at most 8 files. So: pruning on the CPU with the exact flags of bench/{depth,width}/run_smollm2.sh
# (checked against their committed pruning.json), one `lop eval` per model (model loaded once), every model
# skipped when its result exists (resumable, splittable by stage and model), and everything in one tar.gz.
#
# Usage (repository root): bench/smollm2_gpu.sh [STAGE...]   default: timing eval pack
#   prune    prune the pruned models of MODELS on the CPU (checkpoints in WORK; kept ones are reused)
#   eval     per model of MODELS: prune if its checkpoint is missing, then PPL ctx 128,2048 + all 7 tasks
#   timing   the seven-task evaluation of the original model alone (issue 7: under 3 minutes on the GPU)
#   pack     RES -> OUT/smollm2-gpu.tar.gz (bench/eval/make_results.sh turns it into bench/eval/smollm2.md)
# Env (defaults):
#   LOP=build/lop  MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf  DATA=../shared/data  DEVICE=cuda (or cpu)
#   WORK=/tmp/lop-smollm2 (pruned fp32 checkpoints, ~425 MB each)   OUT=/tmp/lop-out (the tar)
#   RES=$WORK/results (the records; on a warm machine a later call resumes from them)
#   MODELS="orig depth-magnitude-20 ... width-llm-pruner-35" (default: all 17; names as in all_models below)
#   JOBS=1 (models pruned / evaluated at once: a 135M model leaves the GPU mostly idle, host-side logit
#     copies and scoring should dominate; >1 makes each model's eval time a time under sharing)
#   THREADS=nproc/JOBS (CPU threads of each lop call)
#   RESUME=FILE (a smollm2-gpu.tar.gz of an earlier call: its records are taken, so a fresh machine resumes)
#   DEADLINE=0 (seconds after start, 0 = none: lop calls still running then are stopped, their model is
#     redone by the next call, and no model starts in the last 60 s; so `pack` runs within the call's limit)
#   LIMIT=0 (items per task; 0 = all)  PPLW=0 (windows per ctx; 0 = all); quick runs get their own RES
# Relative paths are from the repository root. Exit status 1 when a model failed or was stopped (see run.log).
set -euo pipefail
cd "$(dirname "$0")/.."
LOP=${LOP:-build/lop}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${DATA:-../shared/data}
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/lop-smollm2}
OUT=${OUT:-/tmp/lop-out}
LIMIT=${LIMIT:-0}
PPLW=${PPLW:-0}
JOBS=${JOBS:-1}
DEADLINE=${DEADLINE:-0}
THREADS=${THREADS:-$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))}
quick=""
if [ "$LIMIT" != 0 ] || [ "$PPLW" != 0 ]; then quick="-limit$LIMIT-pplw$PPLW"; fi
RES=${RES:-$WORK/results$quick}
all_models="orig"
for p in 20 35; do
    for c in magnitude taylor ppl bi; do all_models+=" depth-$c-$p"; done
    for m in llm-pruner wanda-sp flap magnitude; do all_models+=" width-$m-$p"; done
done
MODELS=${MODELS:-$all_models}
stages=${*:-timing eval pack}
mkdir -p "$WORK" "$OUT" "$RES"/{eval,pruning,logs}
if [ -n "${RESUME:-}" ]; then tar -xzf "$RESUME" -C "$RES" --skip-old-files; fi
t0=$(date +%s)
log() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$RES/run.log"; }
left() { echo $(( DEADLINE > 0 ? DEADLINE - ($(date +%s) - t0) : 1 << 30 )); }
# a lop call, stopped at the DEADLINE (exit status 124)
lop() {
    if (( DEADLINE == 0 )); then "$LOP" "$@"; return; fi
    local l; l=$(left)
    if (( l <= 0 )); then return 124; fi
    timeout "$l" "$LOP" "$@"
}

{
    echo "date: $(date -u +%FT%TZ)  commit: $(cat COMMIT 2>/dev/null || git describe --always --dirty 2>/dev/null || echo ?)"
    echo "settings: DEVICE=$DEVICE LIMIT=$LIMIT PPLW=$PPLW JOBS=$JOBS THREADS=$THREADS MODEL=$MODEL stages='$stages' DEADLINE=$DEADLINE"
    echo "cpu: $(nproc) x $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1; fi
} >> "$RES/env.txt"

# checkpoint of a pruned model: WORK/<name>, pruned with run_smollm2.sh's flags; its record (without
# calibration ids and channel scores) in RES/pruning, compared with the committed one in <name>.check.txt
ensure_ckpt() {
    local name=$1 kind=${1%%-*} crit=${1#*-} pct=${1##*-} out=$WORK/$1 s=$SECONDS
    crit=${crit%-*}
    if [ ! -f "$out/pruning.json" ]; then
        rm -rf "$out"
        local flags=(--depth "$pct%" --criterion "$crit")
        [ "$kind" = width ] && flags=(--width "$pct%" --method "$crit")
        log "prune $name"
        lop -q prune "$MODEL" "${flags[@]}" --calib "$DATA/austen" --threads "$THREADS" -o "$out" \
            > "$RES/logs/$name.prune.log" 2>&1 || { log "prune $name FAILED (exit $?; 124: DEADLINE)"; return 1; }
        echo "wall_seconds $(( SECONDS - s ))" >> "$RES/logs/$name.prune.log"
    fi
    [ -f "$RES/pruning/$name.check.txt" ] && return 0
    python3 - "$out/pruning.json" "$RES/pruning/$name.pruning.json" "bench/$kind/smollm2/$crit-$pct.pruning.json" \
        "$name" > "$RES/pruning/$name.check.txt" <<'EOF' || { rm -f "$RES/pruning/$name.check.txt"; return 1; }
import json, sys
j = json.load(open(sys.argv[1]))
for l in j.get("layers", []): l.pop("channel_scores", None)
for s in j["calibration"].get("samples", []): s.pop("ids", None)
json.dump(j, open(sys.argv[2], "w"), indent=1)
def kept(d):  # depth: the removed blocks; width: the kept heads and channels of every layer
    return d.get("removed") or [(l.get("kept_heads"), l.get("kept_channels")) for l in d.get("layers", [])]
try:
    ref = json.load(open(sys.argv[3]))
    same = kept(j) == kept(ref) and j["params"]["after"] == ref["params"]["after"]
    print(sys.argv[4], "same pruning as the committed record" if same else "DIFFERS from the committed record")
except FileNotFoundError:
    print(sys.argv[4], "no committed record")
EOF
    log "$name ready ($(( SECONDS - s )) s): $(cat "$RES/pruning/$name.check.txt")"
}

# one lop eval per model: both perplexity contexts and all seven tasks
eval_model() {
    local name=$1 src=$WORK/$1 json=$RES/eval/$1.json s=$SECONDS
    [ -f "$json" ] && { log "eval $name: have it"; return 0; }
    if [ "$name" = orig ]; then src=$MODEL; else ensure_ckpt "$name" || return 1; fi
    log "eval $name"
    lop eval "$src" --ppl "$DATA/wikitext2/wiki.test.raw" --ctx 128,2048 --ppl-windows "$PPLW" \
        --tasks all --data "$DATA/zeroshot" --limit "$LIMIT" --device "$DEVICE" --threads "$THREADS" \
        --json "$json" > "$RES/logs/$name.eval.log" 2>&1 || { log "eval $name FAILED (exit $?; 124: DEADLINE)"; return 1; }
    log "evaluated $name in $(( SECONDS - s )) s: $(grep -E '^ +(128|2048) ' "$RES/logs/$name.eval.log" |
        awk '{printf "ppl@%s %s  ", $1, $4}')$(grep -E '^  average' "$RES/logs/$name.eval.log" | awk '{print "avg", $2}')"
}

# runs "$1 model" for every model of MODELS, JOBS at a time; fails when any of them failed
each_model() {
    local fn=$1 m rc=0 n=0
    for m in $MODELS; do
        [ "$fn" = ensure_ckpt ] && [ "$m" = orig ] && continue
        if (( $(left) < 60 )); then log "DEADLINE $DEADLINE s near: $m and the models after it left for the next call"; break; fi
        "$fn" "$m" &
        if (( ++n >= JOBS )); then wait -n || rc=1; (( n-- )); fi
    done
    while (( n > 0 )); do wait -n || rc=1; (( n-- )); done
    return $rc
}

rc=0
for st in $stages; do
    case $st in
    prune) log "stage prune (JOBS=$JOBS, $THREADS threads each)"; each_model ensure_ckpt || rc=1 ;;
    eval) log "stage eval ($DEVICE, JOBS=$JOBS)"; each_model eval_model || rc=1 ;;
    timing)
        mkdir -p "$RES/timing"
        json=$RES/timing/orig-zeroshot.json
        if [ -f "$json" ]; then log "timing: have it"; else
            log "timing: seven tasks of the original model alone on $DEVICE"
            lop eval "$MODEL" --tasks all --data "$DATA/zeroshot" --limit "$LIMIT" --device "$DEVICE" \
                --threads "$(nproc)" --json "$json" > "$RES/logs/orig-zeroshot-timing.log" 2>&1 || rc=1
            log "timing: $(grep '^total' "$RES/logs/orig-zeroshot-timing.log" || echo FAILED)"
        fi ;;
    pack)
        log "pack -> $OUT/smollm2-gpu.tar.gz ($(ls "$RES/eval" | wc -l) eval records)"
        tar -czf "$OUT/smollm2-gpu.tar.gz" -C "$RES" . ;;
    *) echo "unknown stage '$st' (prune eval timing pack)" >&2; exit 2 ;;
    esac
done
exit $rc
