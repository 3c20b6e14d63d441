# run27 call 2: step_bound again with its read ceiling fixed (call 1's launched 256 threads into a kernel
# bounded at 128: no ceiling printed) and the persistent chain of pure reads (chain, chain_pre) added,
# beside cuda_bw's ceiling -- no lop build (lop's step is call 1's)
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/env.txt; cat COMMIT | tee -a $OUT/env.txt
nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 bench/tools/step_bound.cu -o /tmp/step_bound || exit 1
nvcc -O3 -gencode arch=compute_90,code=sm_90 bench/tools/cuda_bw.cu -o /tmp/cuda_bw -lcublas || exit 1
/tmp/cuda_bw | tee $OUT/cuda_bw.txt | grep read
{ timeout 90 /tmp/step_bound 7b; echo "step_bound 7b exit $?"; timeout 90 /tmp/step_bound 13b; echo "step_bound 13b exit $?"; } |
    tee $OUT/step-bound.txt
/tmp/cuda_bw | grep read
