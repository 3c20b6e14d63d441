# run26 call 1: the first benchmark on an H100 since run8 (runs 11-25 were on H200s) -- the final code of
# run25 (43d91f1), built and tested, then the whole benchmark of issue 3 (bench/cuda_decode.sh: every
# floor, with its ceilings measured in the same call), the HF anchor and the HF parity
export LOP_DEBS=.carry/debs
TEST_VARIANTS="LOP_CUDA_SAMPLE_FAST=0;LOP_CUDA_SAMPLE_FAST=1" scripts/gpu_check.sh build test bench hf parity >/dev/null 2>&1
grep -E "exit|identical|DIFFERENT|FAILED|BUILD|error|\[ *[0-9]+ s\]|hf_7b|parity|max" $OUT/gpu_check.log | grep -v "16 greedy" | head -60
cat $OUT/bench.csv
