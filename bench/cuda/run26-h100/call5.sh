# run26 call 5 (H100): entry 19's streaming probe (bench/tools/stream_shapes.cu: 7B's four product shapes
# under flat and lop-like access patterns, 16 launches of one pattern in a graph) and the read ceiling,
# on the H100, to set beside run14's H200 numbers: is lop's loss against a flat sweep H200-only?
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/env.txt
cat COMMIT | tee -a $OUT/env.txt
nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 bench/tools/stream_shapes.cu -o /tmp/stream_shapes || exit 1
nvcc -O3 -gencode arch=compute_90,code=sm_90 bench/tools/cuda_bw.cu -o /tmp/cuda_bw -lcublas || exit 1
timeout 60 /tmp/cuda_bw | tee $OUT/cuda_bw.txt | grep -E "read|copy"
timeout 120 /tmp/stream_shapes > $OUT/stream-shapes.txt; echo "stream_shapes exit $?"
grep -E "_us " $OUT/stream-shapes.txt | head -80
