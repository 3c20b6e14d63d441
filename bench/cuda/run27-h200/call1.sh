# run27 call 1: the bound of a per-product decode step (bench/tools/step_bound.cu: every product a pure
# streaming read of its weights, in the step's graph order) beside lop's own 7B and 13B batch-1 steps, in
# one call, and the per-shape probes (stream_shapes) -- how much of the H200's 85 % floor a decode step of
# one kernel per product can reach at all (NOTES 29)
export LOP_DEBS=.carry/debs
scripts/gpu_check.sh build bound > /dev/null 2>&1; echo "gpu_check exit $?"
grep -E "exit|FAILED|\[ *[0-9]+ s\]" $OUT/gpu_check.log | head -20
cat $OUT/step-bound.txt
cat $OUT/bound-lop.csv
timeout 100 build/stream_shapes > $OUT/stream-shapes.txt; echo "stream_shapes exit $?"
grep -E "_(warpmma_pipe8|warpnc|linear)_us" $OUT/stream-shapes.txt
