#!/bin/bash
# CPU speed of evaluation (issue 7's speed record): WikiText-2 perplexity at ctx 128 with SmolLM2-135M
# on this machine — time, tokens/s and achieved FLOP rate — against the FLOP rate OpenBLAS sgemm alone
# reaches on the same machine (bench/tools/sgemm_rate.c: SmolLM2's own projection shapes at the
# 1024-token batches perplexity runs, and a 2048^3 square product).
# The VM's speed drifts by 2-3x within minutes (shared host), so the sgemm rate is measured right
# before and right after, and a paired series alternates 64-window perplexity runs with sgemm runs.
# Usage: bench/cpu_eval.sh [MODEL] [full|paired]   (default: both). Writes bench/eval/cpu-ppl.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
model=${1:-$(scripts/fetch_smollm2.sh)}
what=${2:-both}
out=bench/eval
mkdir -p "$out"
cc -O2 bench/tools/sgemm_rate.c $(pkg-config --cflags --libs openblas) -o build/sgemm_rate
sgemm() { build/sgemm_rate 1024 | awk '/smollm2-mix/ {m=$NF} /square/ {s=$NF} END {print m, s}'; }
# model FLOPs per token at ctx 128: 2 x (matmul parameters; the tied embedding counts once, as the head)
# + attention 4 x (q heads x head_dim) x layers x mean attended length ((128 + 1) / 2)
params=$(build/lop info "$model" | sed -n 's/^parameters *\([0-9,]*\).*/\1/p' | tr -d ,)
flop_tok=$(awk "BEGIN{print 2*$params + 4*576*30*64.5}")
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
commit=$(git rev-parse --short HEAD)$(git diff --quiet || echo "-dirty")
csv="$out/cpu-ppl.csv"
ppl() { # windows (0 = all) -> "tokens seconds ppl"
    build/lop -q eval "$model" --ppl wikitext2 --ctx 128 ${1:+--ppl-windows $1} --json build/ppl-bench.json >/dev/null
    python3 -c "import json; p=json.load(open('build/ppl-bench.json'))['perplexity'][0]; print(p['tokens_fed'], p['seconds'], p['ppl'])"
}
rows=()
if [ "$what" != paired ]; then
    read -r mix_b sq_b < <(sgemm)
    read -r tok sec p < <(ppl "")
    read -r mix_a sq_a < <(sgemm)
    rows+=("full,$tok,$sec,$p,$mix_b,$mix_a,$sq_b,$sq_a")
fi
if [ "$what" != full ]; then
    for i in 1 2 3 4 5; do
        read -r mix_b sq_b < <(sgemm)
        read -r tok sec p < <(ppl 64)
        read -r mix_a sq_a < <(sgemm)
        rows+=("paired-$i,$tok,$sec,$p,$mix_b,$mix_a,$sq_b,$sq_a")
    done
fi
{
    echo "# cpu=$cpu; cores=$(nproc); model=$(basename "$model"); flop_per_token=$flop_tok; commit=$commit; date=$(date -u +%FT%TZ)"
    echo "run,tokens_fed,seconds,ppl,tok_per_s,GFLOPs,sgemm_mix_before,sgemm_mix_after,sgemm_square_before,sgemm_square_after,pct_of_sgemm_mix_mean,pct_of_sgemm_best"
    for r in "${rows[@]}"; do
        IFS=, read -r run tok sec p mb ma sb sa <<< "$r"
        awk -v run="$run" -v tok="$tok" -v sec="$sec" -v p="$p" -v mb="$mb" -v ma="$ma" -v sb="$sb" -v sa="$sa" -v f="$flop_tok" 'BEGIN{
            g = tok * f / sec / 1e9; best = mb; if (ma > best) best = ma; if (sb > best) best = sb; if (sa > best) best = sa
            printf "%s,%d,%.1f,%.4f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.0f,%.0f\n", run, tok, sec, p, tok/sec, g, mb, ma, sb, sa, 100*g/((mb+ma)/2), 100*g/best}'
    done
} > "$csv"
column -s, -t < "$csv"
