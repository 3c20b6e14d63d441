# run25 call 3: the chain removed (chain.patch); the samplers keep a tie at the top-p threshold whole
# (call 2's test_sample failure, seed 1796232250: a tie at p's threshold, the GPU's radix path kept
# both tokens, the test's reference one) -- build, the CUDA tests at that seed and at a fresh one under
# the three sampler variants, then the defaults' batch-1 rate and the shapes
export LOP_DEBS=.carry/debs
TEST_VARIANTS="LOP_TEST_SEED=1796232250;LOP_TEST_SEED=1796232250 LOP_CUDA_SAMPLE_FAST=1;LOP_TEST_SEED=1796232250 LOP_CUDA_SAMPLE_FAST=0;LOP_CUDA_SAMPLE_FAST=1;LOP_CUDA_SAMPLE_FAST=0" scripts/gpu_check.sh build test >/dev/null 2>&1
grep -E "exit|identical|DIFFERENT|FAILED|BUILD|error|\[ *[0-9]+ s\]" $OUT/gpu_check.log | grep -v "16 greedy" | head -30
grep -E "sample T=|sampler variant" $OUT/test_cuda.log | head -12
SWEEP="base=" ROUNDS=2 timeout 100 bench/cuda_b1_sweep.sh $OUT/b1.csv build > $OUT/sweep.log 2>&1
grep "^#" $OUT/b1.csv
bash -c 'source bench/cuda_run.sh; cuda_bench_init $OUT/shapes.csv build; run 7b_b1 synth:llama-7b 1 128; run 13b_b1 synth:llama-13b 1 128; run depth4.9b_b1 synth:llama-7b:layers=23 1 128; run width4.9b_b1 "synth:llama-7b:heads=21@4-29:ffn=7155@4-29" 1 128' > $OUT/shapes.log 2>&1
cat $OUT/shapes.csv
