#!/bin/bash
# One call on the GPU machine (device time is scarce): build lop with the CUDA backend against the
# Debian -dev packages carried as .deb files (that machine has nvcc, torch and transformers but none of
# our packages and no network), run the CUDA tests, the HF-transformers parity on full-size shapes,
# the benchmark and the HF anchor, and leave logs and results under $OUT (at most 8 files). One call
# runs 10 minutes at most: build + test take several minutes and bench up to 7, so give them
# separate calls (on a warm machine the build is kept between calls).
# Usage: LOP_DEBS=DIR_OF_DEBS scripts/gpu_check.sh [stages]   stages: build test repeats train parity bench b1sweep iso bound timeline hf demo
#   (bound: bench/tools/step_bound.cu, the step of pure weight reads a per-product decode graph could reach,
#   7B and 13B, beside lop's own batch-1 step of each in the same call; BOUND_ARGS sets the 7B spins)
#   (repeats: test_cuda REPEATS times (default 10), each at a fresh random seed; a failing run's log is
#   kept as repeat-fail-SEED.log, and LOP_TEST_SEED=SEED repeats it)
#   (b1sweep: bench/tools/sync_cost.cu, what a launch gap, PDL and a grid barrier cost,
#   bench/tools/stream_shapes.cu, how fast 7B's matrix shapes stream under four access patterns, then
#   bench/cuda_b1_sweep.sh, the batch-1 engine switches, about 5 minutes)
#   (timeline: bench/cuda_timeline.sh on a `make TIMELINE=1` build, per-launch times inside 7B's decode graph)
#   (train: the CUDA trainer and bench/prune_gpu.sh; demo: scripts/demo.sh, make demo's GPU path, when the
#   SmolLM2 GGUF is in models/ and LOP_DATA names the data folder -- that machine has no apt-get/pip network)
# scripts/gpu_carry.sh prepares what to carry there: the .deb files (.carry/debs), the data folder, the
# SmolLM2 GGUF in parts, and the ignored file COMMIT (git rev-parse --short HEAD), which the records and
# the binary's embedded commit then name.
# Test the build stage on a machine without a GPU first: it needs only nvcc and the .deb files.
set -uo pipefail
cd "$(dirname "$0")/.."
DEBS=${LOP_DEBS:-../debs}
OUT=${OUT:-/tmp/lop-out}
BUILD=${BUILD:-build}
JOBS=${JOBS:-$(nproc)}
stages=${*:-build test bench parity hf}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
has() { case " $stages " in *" $1 "*) return 0 ;; esac; return 1; }
t_start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_start )) s] $*"; }

# ---- dependencies from the carried .deb files, unpacked into a private prefix
P=${LOP_DEPS_PREFIX:-/tmp/lop-deps}
mkdir -p "$P"
for f in "$DEBS"/*.deb; do dpkg -x "$f" "$P" || { echo "cannot unpack $f"; exit 1; }; done
LIB=$P/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB:$LIB/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
DEP_CFLAGS="-I$P/usr/include/cjson -I$P/usr/include -I$P/usr/include/x86_64-linux-gnu/openblas-pthread"
DEP_LIBS="-L$LIB -L$LIB/openblas-pthread -Wl,-rpath,$LIB:$LIB/openblas-pthread -lcjson -lopenblas -lpcre2-8"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
    nvcc --version | tail -2
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1
    uname -r; nproc
} | tee "$OUT/env.txt"

# the tree's .git may be a stale copy there: a COMMIT file (carried) names what is built
commit_arg=()
[ -f COMMIT ] && commit_arg=(LOP_COMMIT="$(cat COMMIT)")

# the timeline stage's `make TIMELINE=1` build runs beside the main one (both are mostly serial nvcc work)
tl_make() {
    make -s -j"$JOBS" BUILD="$BUILD-tl" TIMELINE=1 DEP_CFLAGS="$DEP_CFLAGS" DEP_LIBS="$DEP_LIBS" "${commit_arg[@]}" \
        "$BUILD-tl/lop"
}
tl_pid=
if has build; then
    stamp "build"
    if has timeline; then tl_make > "$OUT/timeline-build.log" 2>&1 & tl_pid=$!; fi
    tests=$(ls tests/test_*.c | sed "s|tests/\(.*\)\.c|$BUILD/tests/\1|")
    make -s -j"$JOBS" BUILD="$BUILD" DEP_CFLAGS="$DEP_CFLAGS" DEP_LIBS="$DEP_LIBS" "${commit_arg[@]}" all $tests ||
        { echo "BUILD FAILED"; exit 1; }
    nvcc -O3 -gencode arch=compute_90,code=sm_90 bench/tools/cuda_bw.cu -o "$BUILD/cuda_bw" -lcublas || exit 1
    nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 bench/tools/sync_cost.cu -o "$BUILD/sync_cost" || exit 1
    nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 bench/tools/stream_shapes.cu -o "$BUILD/stream_shapes" || exit 1
    nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 bench/tools/step_bound.cu -o "$BUILD/step_bound" || exit 1
    make -s BUILD="$BUILD" DEP_CFLAGS="$DEP_CFLAGS" DEP_LIBS="$DEP_LIBS" "${commit_arg[@]}" "$BUILD/gemv_iso" "$BUILD/sample_iso" || exit 1
    stamp "build done"
fi

if has test; then
    stamp "tests"
    timeout 180 "$BUILD/tests/test_cuda" > "$OUT/test_cuda.log" 2>&1
    echo "test_cuda exit $?"
    grep -E "error|PASSED|FAILED|SKIPPED|OK \]|^  " "$OUT/test_cuda.log" | grep -v "^\[ RUN" | tail -150
    # the GEMV loop variants, PDL launches and the other engine switches (benchmarked in bench/cuda_decode.sh
    # and bench/cuda_b1_sweep.sh) pass the same tests
    # each variant: exit status, cmocka's summary and the seed; a failing run's log is kept as
    # test_cuda_fail_N.log (LOP_TEST_SEED=seed repeats it)
    variant() {
        vn=$((${vn:-0} + 1))
        env "$@" timeout 60 "$BUILD/tests/test_cuda" > /tmp/tv.log 2>&1
        local rc=$?
        echo "test_cuda $* exit $rc $(grep -E '^\[  (PASSED|FAILED)  \]|random seed' /tmp/tv.log | sed 's/.*random seed \([0-9]*\).*/seed \1/' | tr '\n' ' ')"
        [ $rc = 0 ] || cp /tmp/tv.log "$OUT/test_cuda_fail_$vn.log"
    }
    # TEST_VARIANTS="VARS;VARS..." replaces the list
    default_variants="LOP_CUDA_GEMV=1;LOP_CUDA_GEMV=2;LOP_CUDA_GEMV=3;LOP_CUDA_PDL=1;\
LOP_CUDA_PDL=1 LOP_CUDA_GEMV_OCC=33 LOP_CUDA_PREFETCH_KB=8;LOP_CUDA_XNORM=0;LOP_CUDA_GEMV_GRID=0;\
LOP_CUDA_GEMV_MAX_NB=8;LOP_CUDA_GEMV_MAX_NB=0;LOP_CUDA_DECODE_TUNE=0;LOP_CUDA_VPAIR=0;LOP_CUDA_GEMV_BALANCE=0;\
LOP_CUDA_VPAIR=0 LOP_CUDA_GEMV_BALANCE=0;LOP_CUDA_GEMV_ACC=1;LOP_CUDA_GEMV_ACC=3;LOP_CUDA_GEMV_MMA=0;\
LOP_CUDA_GEMV_MMA=0 LOP_CUDA_GEMV=2;LOP_CUDA_GEMV_MMA=2;LOP_CUDA_GEMV_ACC=0;LOP_CUDA_GEMV=4;\
LOP_CUDA_ATTN_MINKEYS=0;LOP_CUDA_ATTN_MINKEYS=8;LOP_CUDA_ATTN_MINKEYS=64;LOP_CUDA_ATTN_WARPS=4;LOP_CUDA_PREFETCH_KB=2;\
LOP_CUDA_GEMV=0;LOP_CUDA_GEMV=6 LOP_CUDA_GEMV_ACC=5;LOP_CUDA_GEMV_ACC=6;LOP_CUDA_GEMV_MMA=0 LOP_CUDA_GEMV=0;\
LOP_CUDA_SAMPLE_FAST=0;LOP_CUDA_ATTN_WARPS=8;LOP_CUDA_GEMV_ACC=2;LOP_CUDA_XN_WARPS=4;LOP_CUDA_XN_WARPS=16;\
LOP_CUDA_SAMPLE_FAST=1;LOP_CUDA_ATTN_ONE=0;\
LOP_CUDA_ATTN_ONE=16;LOP_CUDA_ATTN_ONE=0 LOP_CUDA_ATTN_WARPS=4;LOP_CUDA_ATTN_ONE=32 LOP_CUDA_ATTN_MINKEYS=8;\
LOP_CUDA_HEAD_XN=0;LOP_CUDA_PDL=1 LOP_CUDA_GEMV_BALANCE=0;LOP_CUDA_ATTN_SPEC=0;LOP_CUDA_ATTN_GRIDCUT=0;\
LOP_CUDA_HIST_MAPPED=0"
    IFS=';' read -r -a test_variants <<< "${TEST_VARIANTS-$default_variants}"
    for e in "${test_variants[@]}"; do
        variant $e
    done
    for t in test_generate test_hf_parity test_ops; do
        timeout 60 "$BUILD/tests/$t" > /tmp/$t.log 2>&1; echo "$t exit $? $(grep -E '^\[  (PASSED|FAILED)  \]' /tmp/$t.log | tr '\n' ' ')"
    done
    # lop's hand-written NVML ABI against the real nvml.h (compile-time asserts), then one read through both
    nvml_inc=$(dirname "$(command -v nvcc)")/../include
    cc -Isrc -I"$nvml_inc" -I/usr/local/cuda/include tests/gpu/nvml_abi.c -o "$BUILD/nvml_abi" -ldl && "$BUILD/nvml_abi"
    echo "nvml_abi exit $?"
    # the real SmolLM2 (present when the GGUF was staged in parts, bench/cuda/NOTES.md); test_cuda above ran its
    # 32-token GPU-vs-CPU greedy test when it was there
    smol=${LOP_SMOLLM2:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
    if [ -f "$smol" ]; then
        for d in cuda cpu; do
            "$BUILD/lop" -q generate "$smol" --prompt "The capital of France is" -n 32 --temp 0 --ignore-eos --device $d \
                > "/tmp/smol_$d.txt" 2>/dev/null
            echo "SmolLM2 greedy $d: $(tr '\n' ' ' < /tmp/smol_$d.txt)"
        done
        cmp -s /tmp/smol_cuda.txt /tmp/smol_cpu.txt && echo "SmolLM2 greedy text: identical" || echo "SmolLM2 greedy text: DIFFERENT"
    fi
    # SmolLM2-shaped model (random weights) greedy, GPU vs CPU
    sm_ids=1,9690,42,2
    g=$("$BUILD/lop" -q generate synth:smollm2-135m --ids $sm_ids -n 32 --ignore-eos --device cuda 2>/dev/null)
    c=$("$BUILD/lop" -q generate synth:smollm2-135m --ids $sm_ids -n 32 --ignore-eos --device cpu 2>/dev/null)
    echo "smollm2-shape greedy cuda: $g"; echo "smollm2-shape greedy cpu:  $c"
    [ "$g" = "$c" ] && echo "smollm2-shape greedy: identical 32 tokens" || echo "smollm2-shape greedy: DIFFERENT"
    stamp "tests done"
fi

if has repeats; then # the GPU tests draw random inputs: tolerance flakes show only across seeds
    stamp "fresh-seed repeats"
    n_rep=${REPEATS:-10}
    for i in $(seq "$n_rep"); do
        timeout 60 "$BUILD/tests/test_cuda" > /tmp/rep.log 2>&1
        rc=$?
        seed=$(grep -o 'random seed [0-9]*' /tmp/rep.log | grep -o '[0-9]*')
        echo "repeat $i seed $seed exit $rc $(grep -E '^\[  (PASSED|FAILED)  \]' /tmp/rep.log | tr '\n' ' ')"
        [ $rc = 0 ] || cp /tmp/rep.log "$OUT/repeat-fail-$seed.log"
        sleep 1 # the seed is the time in seconds
    done > "$OUT/repeats.txt"
    grep -v "exit 0" "$OUT/repeats.txt"
    echo "repeats passed: $(grep -c 'exit 0' "$OUT/repeats.txt") of $n_rep"
    stamp "fresh-seed repeats done"
fi

if has train; then # the CUDA trainer against the CPU one, then the pruning criteria on a 7B model
    stamp "trainer"
    timeout 120 "$BUILD/tests/test_train_cuda" > "$OUT/test_train_cuda.log" 2>&1
    echo "test_train_cuda exit $?"
    grep -E "PASSED|FAILED|SKIPPED|^  |error" "$OUT/test_train_cuda.log" | tail -40
    timeout 300 env KINDS="${KINDS:-depth width}" LOP="$BUILD/lop" OUT="$OUT" bench/prune_gpu.sh; echo "prune_gpu exit $?"
    stamp "trainer done"
fi

if has bench; then
    stamp "bench"
    timeout 420 bench/cuda_decode.sh "$OUT/bench.csv" "$BUILD"; echo "bench exit $?"
    stamp "bench done"
fi

if has b1sweep; then
    stamp "batch-1 sweep"
    timeout 60 "$BUILD/sync_cost" | tee "$OUT/sync-cost.txt"; echo "sync_cost exit ${PIPESTATUS[0]}"
    timeout 150 "$BUILD/stream_shapes" | tee "$OUT/stream-shapes.txt"; echo "stream_shapes exit ${PIPESTATUS[0]}"
    timeout 400 bench/cuda_b1_sweep.sh "$OUT/b1-sweep.csv" "$BUILD"; echo "b1sweep exit $?"
    stamp "batch-1 sweep done"
fi

if has iso; then # lop's own GEMV launches alone (bench/tools/gemv_iso.cu), once per ISO_SWEEP="name=VARS;..." setting,
    # beside stream_shapes' probes of the same shapes; ISO_CASES="o,qkv_rope_xn,..." picks cases (default all)
    stamp "GEMV in isolation"
    timeout 100 "$BUILD/stream_shapes" > "$OUT/stream-shapes.txt"; echo "stream_shapes exit $?"
    grep -E "_(warpmma_pipe8|warpnc|linear)_us" "$OUT/stream-shapes.txt"
    IFS=';' read -r -a iso_sweep <<< "${ISO_SWEEP:-base=}"
    for entry in "${iso_sweep[@]}"; do
        echo "# ${entry%%=*}: ${entry#*=}"
        env ${entry#*=} timeout 90 "$BUILD/gemv_iso" ${ISO_CASES:-} | sed "s/^iso_/iso_${entry%%=*}_/"
    done | tee "$OUT/gemv-iso.txt"
    timeout 60 "$BUILD/sample_iso" | tee "$OUT/sample-iso.txt"; echo "sample_iso exit ${PIPESTATUS[0]}"
    stamp "GEMV in isolation done"
fi

if has bound; then # the per-product step's bound (step_bound) and lop's own step, 7B and 13B batch 1, in one call
    stamp "step bound"
    { timeout 90 "$BUILD/step_bound" 7b ${BOUND_ARGS:-}; echo "step_bound 7b exit $?"
      timeout 90 "$BUILD/step_bound" 13b; echo "step_bound 13b exit $?"; } | tee "$OUT/step-bound.txt"
    bash -c 'source bench/cuda_run.sh; cuda_bench_init "$1" "$2" >/dev/null; run 7b_b1 synth:llama-7b 1 128; run 13b_b1 synth:llama-13b 1 128' \
        _ "$OUT/bound-lop.csv" "$BUILD" > "$OUT/bound-lop.log" 2>&1
    cat "$OUT/bound-lop.csv"
    stamp "step bound done"
fi

if has timeline; then # TL_SWEEP="name=VARS;..." (default: the defaults alone), on a `make TIMELINE=1` build
    stamp "timeline"
    if { [ -n "$tl_pid" ] && wait "$tl_pid"; } || tl_make; then
        IFS=';' read -r -a tl_sweep <<< "${TL_SWEEP:-base=}"
        for entry in "${tl_sweep[@]}"; do
            echo "== timeline ${entry%%=*}: ${entry#*=}"
            TL_NAME=${entry%%=*} timeout 120 bench/cuda_timeline.sh "$OUT/tl" "$BUILD-tl" "${TL_SPEC:-synth:llama-7b}" 1 \
                ${entry#*=}
        done
        cat "$OUT"/tl/launches-*.txt > "$OUT/timeline-launches.txt"
        tar czf "$OUT/timeline-raw.tgz" -C "$OUT/tl" . && rm -rf "$OUT/tl"
    else
        echo "TIMELINE BUILD FAILED"
    fi
    stamp "timeline done"
fi

if has parity; then
    stamp "HF parity"
    timeout 150 python3 scripts/gpu_hf_parity.py "$BUILD/lop" "$OUT"; echo "parity exit $?"
    stamp "HF parity done"
fi

if has hf; then
    stamp "HF anchor"
    timeout 110 python3 bench/hf_anchor.py 1 128 2 2>&1 | grep -v Warning | tee "$OUT/hf_anchor.txt"
    stamp "HF anchor done"
fi

if has demo; then # make demo without its dependency step (the packages come from the .deb files here)
    stamp "demo"
    timeout 400 scripts/demo.sh "$BUILD" > "$OUT/demo.log" 2>&1; echo "demo exit $?"
    tail -8 "$OUT/demo.log"
    stamp "demo done"
fi
