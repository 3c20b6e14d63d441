#!/bin/bash
# CPU decode/prefill benchmark of SmolLM2-135M (issue 2's performance record): measures this machine's
# streaming-read bandwidth, then lop's decode at batch 1 and 8 (tok/s, ms/step, achieved GB/s = bytes a
# step must read / step time) and prefill tok/s. Writes bench/cpu/smollm2-<host>.csv and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
model=${1:-$(scripts/fetch_smollm2.sh)}
out=bench/cpu
mkdir -p "$out"
cc -O3 -march=native -ffast-math -pthread bench/tools/membw.c -o build/membw
best_bw() { for _ in 1 2 3; do build/membw; done | awk '$2 > b {b = $2} END {print b}'; }
bw_before=$(best_bw)
rows=()
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
ncpu=$(nproc)
commit=$(git rev-parse --short HEAD)$(git diff --quiet || echo "-dirty")
csv="$out/smollm2-cpu.csv"
prompt="The history of the English language begins with the arrival of three Germanic tribes who invaded Britain during the fifth century"
run() { # batch n_new prompt-repeat
    local p="$prompt"
    for _ in $(seq 2 "$3"); do p="$p. $prompt"; done
    build/lop -q generate "$model" -p "$p" -n "$2" --batch "$1" --ignore-eos 2>&1 >/dev/null
}
for b in 1 8; do
    best=""
    for rep in 1 2 3; do   # best of 3: the machine is shared
        line=$(run $b 128 1 | grep '^decode:')
        ms=$(echo "$line" | sed -E 's/.*: ([0-9.]+) ms\/token step.*/\1/')
        if [ -z "$best" ] || awk "BEGIN{exit !($ms < $(echo "$best" | sed -E 's/.*: ([0-9.]+) ms\/token step.*/\1/'))}"; then best=$line; fi
    done
    ms=$(echo "$best" | sed -E 's/.*: ([0-9.]+) ms\/token step.*/\1/')
    tps=$(echo "$best" | sed -E 's/.*, ([0-9.]+) tok\/s.*/\1/')
    gbs=$(echo "$best" | sed -E 's/.*, ([0-9.]+) GB\/s.*/\1/')
    rows+=("decode,$b,,128,$ms,$tps,$gbs")
done
line=$(run 1 1 8 | grep '^prefill:')
ptok=$(echo "$line" | sed -E 's/prefill: ([0-9]+) tokens.*/\1/')
ptps=$(echo "$line" | sed -E 's/.*\(([0-9.]+) tok\/s\).*/\1/')
# The VM's bandwidth drifts (25-48 GB/s seen within minutes): measure before and after, divide by the
# larger, so the percentage is a lower bound.
bw_after=$(best_bw)
bw=$(awk "BEGIN{print ($bw_before > $bw_after) ? $bw_before : $bw_after}")
{
    echo "# cpu=$cpu; cores=$ncpu; read_bw_GBps=$bw (before $bw_before; after $bw_after); commit=$commit; date=$(date -u +%FT%TZ)"
    echo "mode,batch,prompt_tokens,new_tokens,ms_per_step,tok_per_s,achieved_GBps,pct_of_read_bw"
    for r in "${rows[@]}"; do
        g=${r##*,}
        echo "$r,$(awk "BEGIN{printf \"%.0f\", 100*$g/$bw}")"
    done
    echo "prefill,1,$ptok,1,,$ptps,,"
} > "$csv"
column -s, -t < "$csv"
