# run26 call 2 (after two calls that staged .carry/smol1 and .carry/smol2 in /root/stage): the real
# SmolLM2-135M-Instruct GGUF reassembled, then build and test (test_cuda's 32-token GPU-vs-CPU greedy test
# on it, and `lop generate`'s text on both devices), the batch-1 rate again (three rounds) and the four
# batch-1 shapes, then test_cuda at 8 fresh seeds
export LOP_DEBS=.carry/debs
mkdir -p /root/stage models && cp .carry/smol3/* /root/stage/ &&
    cat /root/stage/smol.part* > models/SmolLM2-135M-Instruct.Q4_1.gguf && sha256sum models/*.gguf | cut -c1-16
TEST_VARIANTS="" scripts/gpu_check.sh build test >/dev/null 2>&1
grep -E "exit|identical|DIFFERENT|FAILED|BUILD|error|SmolLM2|smollm2|\[ *[0-9]+ s\]" $OUT/gpu_check.log | grep -v "16 greedy" | head -30
grep -iE "smollm2" $OUT/test_cuda.log | head
SWEEP="base=" ROUNDS=3 timeout 120 bench/cuda_b1_sweep.sh $OUT/b1.csv build > $OUT/sweep.log 2>&1
cat $OUT/b1.csv
bash -c 'source bench/cuda_run.sh; cuda_bench_init $OUT/shapes.csv build; run 7b_b1 synth:llama-7b 1 128; run 13b_b1 synth:llama-13b 1 128; run depth4.9b_b1 synth:llama-7b:layers=23 1 128; run width4.9b_b1 "synth:llama-7b:heads=21@4-29:ffn=7155@4-29" 1 128' > $OUT/shapes.log 2>&1
cat $OUT/shapes.csv
for i in $(seq 8); do
    timeout 60 build/tests/test_cuda > /tmp/rep.log 2>&1; rc=$?
    seed=$(grep -o 'random seed [0-9]*' /tmp/rep.log | grep -o '[0-9]*')
    echo "repeat $i seed $seed exit $rc $(grep -E '^\[  (PASSED|FAILED)  \]' /tmp/rep.log | tr '\n' ' ')"
    [ $rc = 0 ] || cp /tmp/rep.log $OUT/repeat-fail-$seed.log
    sleep 1
done | tee $OUT/repeats.txt | grep -v "exit 0"; echo "repeats passed: $(grep -c 'exit 0' $OUT/repeats.txt) of 8"
