# the final code: build, measure, then test (measurements first, in case the device time runs out)
export LOP_DEBS=.carry/debs
scripts/gpu_check.sh build > $OUT/build.out 2>&1; grep -E "\[ *[0-9]+ s\]|FAILED" $OUT/build.out
SWEEP="base=;hm0=LOP_CUDA_HIST_MAPPED=0" ROUNDS=2 timeout 60 bench/cuda_b1_sweep.sh $OUT/b1.csv build > $OUT/sweep.log 2>&1
grep "^#" $OUT/b1.csv
bash -c 'source bench/cuda_run.sh; cuda_bench_init $OUT/shapes.csv build; run 7b_b1 synth:llama-7b 1 128; run 13b_b1 synth:llama-13b 1 128; run depth4.9b_b1 synth:llama-7b:layers=23 1 128; run width4.9b_b1 "synth:llama-7b:heads=21@4-29:ffn=7155@4-29" 1 128' > $OUT/shapes.log 2>&1
cat $OUT/shapes.csv
TEST_VARIANTS="" scripts/gpu_check.sh test > $OUT/test.out 2>&1; grep -E "exit|identical|DIFFERENT|FAILED|\[ *[0-9]+ s\]" $OUT/test.out | grep -v "16 greedy"
