#!/bin/sh
# `make demo`: fetch SmolLM2-135M-Instruct and run lop end to end on it (shapes, then generation).
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
