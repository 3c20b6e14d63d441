# Sourced by the CUDA benchmark scripts (cuda_decode.sh, cuda_b1_sweep.sh): the ceilings measured once,
# the CSV header, and run() -- one `lop generate` case with the paper's protocol (12-token prompt
# repeated over the batch, exactly L new tokens, top-k 50 / top-p 0.95 on the GPU, 1 warm-up + 3
# timed runs, median decode) appended as a CSV row. RUN_ENV="VAR=v ..." runs a case with those
# variables set.
# Usage: cuda_bench_init OUT.csv BUILD; then run NAME SPEC BATCH L [extra lop flags...]
ids=1,450,4955,310,278,4223,4086,16410,411,278,18647,310
samp="--temp 1 --top-k 50 --top-p 0.95 --seed 1"

cuda_bench_init() { # csv build: sets csv LOP read_bw gemm, writes the CSV header
    csv=$1
    LOP=$2/lop
    local bw_out
    bw_out=$($2/cuda_bw) || { echo "cuda_bw failed"; return 1; }
    echo "$bw_out"
    read_bw=$(echo "$bw_out" | awk '$1=="read_GBps"{print $2}')
    gemm=$(echo "$bw_out" | awk '$1=="gemm_7b_layer_mix_TFLOPs"{print $2}')
    local gpu cuda commit
    gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
    cuda=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
    commit=$(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
    echo "# gpu=$gpu; cuda=$cuda; commit=$commit; read_GBps=$read_bw; cublas_fp16_gemm_TFLOPs=$gemm; date=$(date -u +%FT%TZ)" > "$csv"
    echo "case,model,batch,new_tokens,ms_per_step,tok_per_s,achieved_GBps,pct_of_read_bw,prefill_ms,plan_GiB" >> "$csv"
}

run() { # name spec batch L extra...
    local name=$1 spec=$2 b=$3 L=$4; shift 4
    local out
    out=$(env ${RUN_ENV:-} $LOP -q generate "$spec" --device cuda --ids $ids -n "$L" --batch "$b" --ignore-eos $samp \
        --warmup 1 --runs 3 "$@" 2>&1 >/dev/null)
    local rc=$?
    echo "== $name: ${RUN_ENV:-} $spec batch $b L $L $*"
    echo "$out"
    if [ $rc -ne 0 ]; then echo "$name,$spec,$b,$L,FAILED,,,,," >> "$csv"; return; fi
    local line ms tps gbs pct pre plan
    line=$(echo "$out" | grep '^decode:')
    ms=$(echo "$line" | sed -E 's/.*: ([0-9.]+) ms\/token step.*/\1/')
    tps=$(echo "$line" | sed -E 's/.*, ([0-9.]+) tok\/s.*/\1/')
    gbs=$(echo "$line" | sed -E 's/.*, ([0-9.]+) GB\/s.*/\1/')
    pct=$(awk "BEGIN{printf \"%.1f\", 100*$gbs/$read_bw}")
    pre=$(echo "$out" | sed -n 's/.*prefill median \([0-9.]*\) ms.*/\1/p')
    plan=$(echo "$out" | sed -n 's/^plan:.* = \([0-9.]*\) GiB.*/\1/p')
    echo "$name,$spec,$b,$L,$ms,$tps,$gbs,$pct,$pre,$plan" >> "$csv"
}
