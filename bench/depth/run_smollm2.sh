#!/bin/sh
# Depth pruning of SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to fp32) with every criterion at
# 20 % and 35 % of the parameters ("+" rule, one-shot, 10 x 128 Austen tokens, seed 0), then
# WikiText-2 perplexity (paper protocol, bench/tools/wikitext_ppl.c) of the original and each
# pruned checkpoint. Records under bench/depth/smollm2/; bench/depth/make_table.py renders the table.
#   bench/depth/run_smollm2.sh [prune|ppl|all]     (from the repository root; CPU only)
# Env: LOP_DATA (default ../shared/data), WORK (checkpoints, default /tmp/lop-depth-smollm2),
#      MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf).
set -eu
what=${1:-all}
DATA=${LOP_DATA:-../shared/data}
WORK=${WORK:-/tmp/lop-depth-smollm2}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
REC=bench/depth/smollm2
mkdir -p "$REC" "$WORK"
make -s build/lop build/liblop.a
if [ "$what" = prune ] || [ "$what" = all ]; then
    for crit in magnitude taylor ppl bi; do
        for pct in 20 35; do
            out="$WORK/$crit-$pct"
            rm -rf "$out"
            /usr/bin/time -f "%e" -o "$WORK/time" build/lop -q prune "$MODEL" --depth "$pct%" --criterion "$crit" \
                --calib "$DATA/austen" -o "$out" > "$REC/$crit-$pct.log"
            echo "wall_seconds $(cat "$WORK/time")" >> "$REC/$crit-$pct.log"
            # the record without the calibration token ids (they are in every run's own pruning.json)
            python3 -c "import json,sys; j=json.load(open(sys.argv[1])); [s.pop('ids') for s in j['calibration'].get('samples', [])]; json.dump(j, open(sys.argv[2],'w'), indent=1)" \
                "$out/pruning.json" "$REC/$crit-$pct.pruning.json"
            echo "$crit $pct%: $(grep '^removed' "$REC/$crit-$pct.log")  ($(cat "$WORK/time") s)"
        done
    done
fi
if [ "$what" = ppl ] || [ "$what" = all ]; then
    # link like the Makefile does (its LDLIBS include the CUDA libraries when nvcc was found)
    cc -O2 -Iinclude -Isrc $(pkg-config --cflags libcjson openblas) bench/tools/wikitext_ppl.c build/liblop.a \
        $(make -s -p 2>/dev/null | sed -n 's/^LDLIBS *:= *//p' | head -1) -o build/wikitext_ppl
    : > "$REC/ppl.jsonl.tmp"
    for m in "$MODEL" "$WORK"/magnitude-20 "$WORK"/magnitude-35 "$WORK"/taylor-20 "$WORK"/taylor-35 \
             "$WORK"/ppl-20 "$WORK"/ppl-35 "$WORK"/bi-20 "$WORK"/bi-35; do
        build/wikitext_ppl "$m" "$DATA/wikitext2/wiki.test.raw" 128 0 8 | tee -a "$REC/ppl.jsonl.tmp"
    done
    mv "$REC/ppl.jsonl.tmp" "$REC/ppl.jsonl"
fi
