export LOP_DEBS=.carry/debs
TEST_VARIANTS="LOP_CUDA_RING=3;LOP_CUDA_RING=2 LOP_CUDA_RING_ACC=4;LOP_CUDA_RING=6 LOP_CUDA_RING_U=2 LOP_CUDA_RING_ACC=3;LOP_CUDA_RING=3 LOP_CUDA_RING_ACC=3 LOP_CUDA_PDL=1 LOP_CUDA_GEMV_BALANCE=0" TL_SWEEP="base=;r3=LOP_CUDA_RING=3;a3=LOP_CUDA_RING_ACC=3" scripts/gpu_check.sh build test timeline >/dev/null 2>&1
grep -E "exit|identical|DIFFERENT|FAILED|\[ *[0-9]+ s\]" $OUT/gpu_check.log | grep -v "16 greedy" | head -40
tar xzf $OUT/timeline-raw.tgz -O ./summary-base.txt ./summary-r3.txt ./summary-a3.txt 2>/dev/null
SWEEP="base=;r2=LOP_CUDA_RING=2;r3=LOP_CUDA_RING=3;r4u2=LOP_CUDA_RING=4 LOP_CUDA_RING_U=2;r6u2=LOP_CUDA_RING=6 LOP_CUDA_RING_U=2;a3=LOP_CUDA_RING_ACC=3;a4=LOP_CUDA_RING_ACC=4;a6u2=LOP_CUDA_RING_ACC=6 LOP_CUDA_RING_U=2;r3a3=LOP_CUDA_RING=3 LOP_CUDA_RING_ACC=3;r3a3pdl=LOP_CUDA_RING=3 LOP_CUDA_RING_ACC=3 LOP_CUDA_PDL=1 LOP_CUDA_GEMV_BALANCE=0" ROUNDS=3 timeout 200 bench/cuda_b1_sweep.sh $OUT/b1.csv build > $OUT/sweep.log 2>&1
cat $OUT/b1.csv | head -40
