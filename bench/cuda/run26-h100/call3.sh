# run26 call 3 (H100): the whole benchmark of issue 3 a second time on the code of call 1 (43d91f1),
# with the HF anchor, then the batch-1 engine switches (bench/cuda_b1_sweep.sh's list, two rounds:
# the defaults were chosen on the H200 from run11 on), then test_cuda at 5 fresh seeds
export LOP_DEBS=.carry/debs
TEST_VARIANTS="" scripts/gpu_check.sh build test bench hf >/dev/null 2>&1
grep -E "exit|identical|DIFFERENT|FAILED|BUILD|error|\[ *[0-9]+ s\]|hf_7b" $OUT/gpu_check.log | grep -v "16 greedy" | head -30
cat $OUT/bench.csv
ROUNDS=2 timeout 170 bench/cuda_b1_sweep.sh $OUT/b1-sweep.csv build > $OUT/sweep.log 2>&1
grep "^#" $OUT/b1-sweep.csv
for i in $(seq 5); do
    timeout 60 build/tests/test_cuda > /tmp/rep.log 2>&1; rc=$?
    seed=$(grep -o 'random seed [0-9]*' /tmp/rep.log | grep -o '[0-9]*')
    echo "repeat $i seed $seed exit $rc $(grep -E '^\[  (PASSED|FAILED)  \]' /tmp/rep.log | tr '\n' ' ')"
    [ $rc = 0 ] || cp /tmp/rep.log $OUT/repeat-fail-$seed.log
    sleep 1
done | tee $OUT/repeats.txt | grep -v "exit 0"; echo "repeats passed: $(grep -c 'exit 0' $OUT/repeats.txt) of 5"
