# run25 call 2: why the chain loses (call 1: 211-242 tok/s against 264) -- without the preload (PRE=0),
# with a backed-off poll (SLEEP), and its timeline (each chained product logged as a launch, the barrier as its gap)
R=$PWD
export LOP_DEBS=.carry/debs
TEST_VARIANTS="LOP_CUDA_CHAIN=2;LOP_CUDA_CHAIN=3 LOP_CUDA_CHAIN_PRE=0;LOP_CUDA_CHAIN=3 LOP_CUDA_CHAIN_SLEEP=200" TL_SWEEP="base=;c3=LOP_CUDA_CHAIN=3;c3np=LOP_CUDA_CHAIN=3 LOP_CUDA_CHAIN_PRE=0" scripts/gpu_check.sh build test timeline >/dev/null 2>&1
grep -E "exit|identical|DIFFERENT|FAILED|BUILD|error|\[ *[0-9]+ s\]" $OUT/gpu_check.log | grep -v "16 greedy" | head -30
tar xzf $OUT/timeline-raw.tgz -O ./summary-base.txt ./summary-c3.txt ./summary-c3np.txt 2>/dev/null
SWEEP="base=;c2=LOP_CUDA_CHAIN=2;c2np=LOP_CUDA_CHAIN=2 LOP_CUDA_CHAIN_PRE=0;c3=LOP_CUDA_CHAIN=3;c3np=LOP_CUDA_CHAIN=3 LOP_CUDA_CHAIN_PRE=0;c3s=LOP_CUDA_CHAIN=3 LOP_CUDA_CHAIN_SLEEP=200" ROUNDS=2 timeout 200 bench/cuda_b1_sweep.sh $OUT/b1.csv build > $OUT/sweep.log 2>&1
cat $OUT/b1.csv | grep "^#"
