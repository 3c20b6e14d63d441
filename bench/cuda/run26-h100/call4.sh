# run26 call 4 (H100): the whole default list of engine settings of `gpu_check.sh test` (44, last run
# on an H200 in run25 call 4) on the H100, with the other GPU tests, then where 7B's decode step goes
# inside its CUDA graph on the H100 (bench/cuda_timeline.sh on a TIMELINE=1 build; NOTES 28 could
# only estimate the H100's fixed part, ~0.6 ms)
export LOP_DEBS=.carry/debs
scripts/gpu_check.sh build test timeline >/dev/null 2>&1
grep -E "exit|identical|DIFFERENT|FAILED|BUILD|error|\[ *[0-9]+ s\]" $OUT/gpu_check.log | grep -v "16 greedy" | grep -v "exit 0 seed" | head -30
echo "variants passed: $(grep -c 'exit 0 seed' $OUT/gpu_check.log)"
sed -n "/== timeline/,\$p" $OUT/gpu_check.log | head -40
