#!/bin/bash
# The committed SmolLM2-135M results table (issues 5, 6, 7) from the records of bench/smollm2_gpu.sh, so
# that no number is copied by hand: rows original / depth <criterion> 20, 35 % / width <method> 20, 35 %,
# columns as bench/eval/mktable.py, then the timed seven-task run of the original and the pruning check.
# Usage: bench/eval/make_results.sh [-o FILE] RECORDS...   (default FILE: bench/eval/smollm2.md)
#   RECORDS: smollm2-gpu.tar.gz files or unpacked result folders; merged in order (later ones win), so
#   the tars of several split calls can all be given.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$repo/bench/eval/smollm2.md
if [ "${1:-}" = -o ]; then out=$(realpath -m "$2"); shift 2; fi
[ $# -gt 0 ] || { sed -n '2,7s/^# \?//p' "$0"; exit 2; }
records=()
for r in "$@"; do records+=("$(realpath "$r")"); done
cd "$repo"
res=$(mktemp -d)
trap 'rm -rf "$res"' EXIT
for r in "${records[@]}"; do
    if [ -d "$r" ]; then cp -r "$r"/. "$res"/; else tar -xzf "$r" -C "$res"; fi
done

# "params after" of a pruned model from its pruning record, in millions
params() { python3 -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['params'][sys.argv[2]] / 1e6:.1f}M\")" "$@"; }
rows=()
timing=$res/timing/orig-zeroshot.json
add() { # row name, model name
    local f=$res/eval/$2.json p=$res/pruning/$2.pruning.json
    if [ ! -f "$f" ]; then echo "make_results: no record for $2" >&2; return; fi
    # the committed record of the same pruning when the run's own is not among the records
    [ -f "$p" ] || p=bench/${2%%-*}/smollm2/${2#*-}.pruning.json
    # the original's zero-shot results may come from the timed run alone
    [ "$2" = orig ] && [ -f "$timing" ] && ! grep -qs '"zeroshot"' "$f" && f="$f,$timing"
    [ -f "$p" ] && rows+=("$1 ($(params "$p" after))=$f") || rows+=("$1=$f")
}
orig_p=$(ls "$res"/pruning/*.pruning.json bench/depth/smollm2/*.pruning.json 2>/dev/null | head -1 || true)
add "original${orig_p:+ ($(params "$orig_p" before))}" orig
for kind in depth width; do
    [ $kind = depth ] && list="magnitude taylor ppl bi" || list="llm-pruner wanda-sp flap magnitude"
    for c in $list; do
        for pct in 20 35; do add "$kind $c $pct%" "$kind-$c-$pct"; done
    done
done

{
    echo "# SmolLM2-135M-Instruct: perplexity and zero-shot accuracy of the pruned models"
    echo
    echo "Made by \`bench/eval/make_results.sh\` from the records of \`bench/smollm2_gpu.sh\`"
    echo "(runs $(sed -n 's/^date: \([^ ]*\) .*commit: \(.*\)/\1 at \2/p' "$res/env.txt" 2>/dev/null | sort -u | paste -sd, | sed 's/,/, /g'))."
    echo "Source model: the Q4_1 GGUF dequantised to fp32; pruning on the CPU with the flags of"
    echo "\`bench/depth/run_smollm2.sh\` and \`bench/width/run_smollm2.sh\` (10 x 128 Austen tokens, seed 0);"
    echo "parameters kept in brackets. WikiText-2: whole test set, non-overlapping windows, BOS at the start."
    echo "Eval time: one \`lop eval\` per model (load, both perplexities, seven tasks); JOBS models at once:"
    sed -n 's/^settings: \(.*\) MODEL=.*/\1/p' "$res/env.txt" 2>/dev/null | sort -u | sed 's/^/`/; s/$/`/' | paste -sd ';' | sed 's/;/; /g'
    # how records made outside the script's stages came about (written with them)
    if [ -f "$res/NOTES.md" ]; then echo; cat "$res/NOTES.md"; fi
    echo
    python3 bench/eval/mktable.py "${rows[@]}"
    if grep -qs '"note":' "$res"/eval/*.json "$res"/timing/*.json; then
        echo
        echo "\* HellaSwag from llama.cpp's derived text (the original jsonl is missing): approximate."
    fi
    if [ -f "$timing" ]; then
        echo
        python3 - "$timing" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
zs = d["zeroshot"]
n = sum(t.get("items", 0) for t in zs["tasks"])
print(f"Seven-task evaluation of the original model alone (issue 7, floor: under 180 s on the GPU): "
      f"**{d['seconds']:.1f} s** for {n} items ({'all' if zs['limit'] == 0 else 'first %d' % zs['limit']} per task), "
      f"{d['device']} ({d['device_name']}), average {100 * zs.get('average', 0):.1f}.")
EOF
    fi
    checks=$(cat "$res"/pruning/*.check.txt 2>/dev/null || true)
    if [ -n "$checks" ]; then
        echo
        echo "Pruning re-run against the committed \`bench/{depth,width}/smollm2/*.pruning.json\`: $(grep -c 'same pruning' <<< "$checks") of $(wc -l <<< "$checks") identical$(grep -v 'same pruning' <<< "$checks" | sed 's/^/; /' | tr -d '\n')."
    fi
} > "$out"
echo "wrote $out (${#rows[@]} rows)"
