# run26 call 6 (whichever card comes): lop's own product kernels alone (bench/tools/gemv_iso.cu) beside
# entry 19's probe (stream_shapes) in one call -- where lop's kernels lose against the probe's loop,
# prologue (qkv_rope_xn vs qkv_rope, gu_swiglu_xn vs gu_swiglu) or the rest (NOTES 28)
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
P=/tmp/lop-deps; mkdir -p $P; for f in .carry/debs/*.deb; do dpkg -x "$f" $P; done
LIB=$P/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/env.txt; cat COMMIT | tee -a $OUT/env.txt
t0=$(date +%s)
make -s -j$(nproc) BUILD=build LOP_COMMIT=$(cat COMMIT) \
    DEP_CFLAGS="-I$P/usr/include/cjson -I$P/usr/include -I$P/usr/include/x86_64-linux-gnu/openblas-pthread" \
    DEP_LIBS="-L$LIB -L$LIB/openblas-pthread -Wl,-rpath,$LIB:$LIB/openblas-pthread -lcjson -lopenblas -lpcre2-8" \
    build/gemv_iso > $OUT/build.log 2>&1 || { echo BUILD FAILED; tail $OUT/build.log; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 bench/tools/stream_shapes.cu -o /tmp/stream_shapes || exit 1
timeout 60 /tmp/stream_shapes > $OUT/stream-shapes.txt; echo "stream_shapes exit $?"
timeout 60 build/gemv_iso > $OUT/gemv-iso.txt; echo "gemv_iso exit $?"
grep -E "_(warpmma_pipe8|linear)_us" $OUT/stream-shapes.txt; grep "_us" $OUT/gemv-iso.txt
