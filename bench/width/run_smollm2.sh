#!/bin/sh
# Width pruning of SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to fp32) with magnitude, Wanda-sp, FLAP and
# LLM-Pruner style (blocks 4..27) at 20 % and 35 % of the parameters (GQA mode query, round 1, 10 x 128 Austen tokens, seed 0),
# then WikiText-2 perplexity (paper protocol, bench/tools/wikitext_ppl.c, seq 128) of the original and
# each pruned checkpoint on the first WINDOWS windows (CPU budget; 0 = all). Records under
# bench/width/smollm2/.
#   bench/width/run_smollm2.sh [prune|ppl|all]     (from the repository root; CPU only)
# Env: LOP_DATA (default ../shared/data), WORK (default /tmp/lop-width-smollm2), MODEL, WINDOWS (default 40).
set -eu
what=${1:-all}
DATA=${LOP_DATA:-../shared/data}
WORK=${WORK:-/tmp/lop-width-smollm2}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
WINDOWS=${WINDOWS:-40}
REC=bench/width/smollm2
mkdir -p "$REC" "$WORK"
make -s build/lop build/liblop.a
if [ "$what" = prune ] || [ "$what" = all ]; then
    for meth in magnitude wanda-sp flap llm-pruner; do
        for pct in 20 35; do
            out="$WORK/$meth-$pct"
            rm -rf "$out"
            /usr/bin/time -f "%e" -o "$WORK/time" build/lop -q prune "$MODEL" --width "$pct%" --method "$meth" \
                --calib "$DATA/austen" -o "$out" > "$REC/$meth-$pct.log"
            echo "wall_seconds $(cat "$WORK/time")" >> "$REC/$meth-$pct.log"
            # the record without per-channel scores and calibration ids (both in the run's own pruning.json)
            python3 -c "import json,sys; j=json.load(open(sys.argv[1])); [l.pop('channel_scores') for l in j['layers']]; [s.pop('ids', None) for s in j['calibration'].get('samples', [])]; json.dump(j, open(sys.argv[2],'w'), indent=1)" \
                "$out/pruning.json" "$REC/$meth-$pct.pruning.json"
            echo "$meth $pct%: $(grep '^parameters' "$REC/$meth-$pct.log")  ($(cat "$WORK/time") s)"
        done
    done
fi
if [ "$what" = ppl ] || [ "$what" = all ]; then
    cc -O2 -Iinclude -Isrc $(pkg-config --cflags libcjson openblas) bench/tools/wikitext_ppl.c build/liblop.a \
        $(make -s -p 2>/dev/null | sed -n 's/^LDLIBS *:= *//p' | head -1) -o build/wikitext_ppl
    lim=""
    [ "$WINDOWS" -gt 0 ] && lim="--max-windows $WINDOWS"
    : > "$REC/ppl.jsonl.tmp"
    for m in "$MODEL" "$WORK"/magnitude-20 "$WORK"/magnitude-35 "$WORK"/wanda-sp-20 "$WORK"/wanda-sp-35 \
             "$WORK"/flap-20 "$WORK"/flap-35 "$WORK"/llm-pruner-20 "$WORK"/llm-pruner-35; do
        build/wikitext_ppl "$m" "$DATA/wikitext2/wiki.test.raw" --seq 128 $lim --batch 8 | tee -a "$REC/ppl.jsonl.tmp"
    done
    mv "$REC/ppl.jsonl.tmp" "$REC/ppl.jsonl"
fi
