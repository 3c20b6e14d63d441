#!/bin/sh
# `make demo`: fetch SmolLM2-135M-Instruct and run lop end to end on it (shapes, generation, then a
# short evaluation).
set -e
BUILD=${1:-build}
gguf=$(scripts/fetch_smollm2.sh)
echo "== lop info $gguf"
"$BUILD/lop" info "$gguf"
echo
echo "== lop generate (greedy, 48 tokens)"
"$BUILD/lop" generate "$gguf" -p "The three most important things about gravity are" -n 48
echo
echo "== lop generate (batch 4, sampled: temp 0.8, top-k 50, top-p 0.95, seed 1)"
"$BUILD/lop" generate "$gguf" -p "Once upon a time" -n 32 --batch 4 --temp 0.8 --top-k 50 --top-p 0.95 --seed 1
echo
# A short evaluation (a couple of minutes on a 2-core CPU): perplexity over the first 16 windows of
# WikiText-2 at ctx 128 and the first 20 items of each zero-shot task. Full runs: docs/eval.md.
data=${LOP_DATA:-../shared/data}
if [ -f "$data/wikitext2/wiki.test.raw" ] || [ -d "$data/zeroshot" ]; then
    echo "== lop eval (short: 16 WikiText-2 windows of 128 tokens, 20 items per zero-shot task)"
    "$BUILD/lop" eval "$gguf" --ppl "$data/wikitext2/wiki.test.raw" --ctx 128 --ppl-windows 16 \
        --tasks all --data "$data/zeroshot" --limit 20
else
    echo "== lop eval skipped: no evaluation data at $data (set LOP_DATA to the folder holding wikitext2/ and zeroshot/)"
fi
