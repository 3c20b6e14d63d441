# run25 call 1: the chain kernel (LOP_CUDA_CHAIN=1..4) -- build, its tests, its SASS (where ptxas spills), the batch-1 sweep
R=$PWD
export LOP_DEBS=.carry/debs
TEST_VARIANTS="LOP_CUDA_CHAIN=1;LOP_CUDA_CHAIN=2;LOP_CUDA_CHAIN=3;LOP_CUDA_CHAIN=4;LOP_CUDA_CHAIN=1 LOP_CUDA_GEMV_BALANCE=0" scripts/gpu_check.sh build test >/dev/null 2>&1
grep -E "exit|identical|DIFFERENT|FAILED|BUILD|error|\[ *[0-9]+ s\]" $OUT/gpu_check.log | grep -v "16 greedy" | head -40
(mkdir -p /tmp/sass && cd /tmp/sass && cuobjdump -xelf all $R/build/src/runtime/cuda/k_chain.cu.o >/dev/null 2>&1; for f in *.cubin; do nvdisasm -g -c "$f"; done | gzip > $OUT/chain-sass.txt.gz) 2>&1 | tail -2
SWEEP="base=;c1=LOP_CUDA_CHAIN=1;c2=LOP_CUDA_CHAIN=2;c3=LOP_CUDA_CHAIN=3;c4=LOP_CUDA_CHAIN=4" ROUNDS=2 timeout 200 bench/cuda_b1_sweep.sh $OUT/b1.csv build > $OUT/sweep.log 2>&1
cat $OUT/b1.csv | head -20
