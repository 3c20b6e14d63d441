#!/bin/sh
# Prepares, on the development machine, what the GPU machine needs but cannot fetch (it has no
# network and none of our Debian -dev packages), as ignored folders under .carry/ to name in the
# device tool's `carry` list (at most 64 MiB travel per call, the working tree included):
#   .carry/debs   the .deb files scripts/gpu_check.sh unpacks (LOP_DEBS=.carry/debs)
#   .carry/data   the evaluation and calibration text of ../shared/data (LOP_DATA), as data.tar.xz
#   .carry/smol1, .carry/smol2, ...   the SmolLM2 GGUF cut in parts small enough to travel with the tree
# and COMMIT (the commit the records name). It prints the calls that stage the model there.
# Usage: scripts/gpu_carry.sh [PART_MB]   (default 40)
set -e
cd "$(dirname "$0")/.."
part_mb=${1:-40}
data=${LOP_DATA:-../shared/data}
rm -rf .carry
mkdir -p .carry/debs .carry/data
(cd .carry/debs && apt-get download -q libcjson-dev libcjson1 libopenblas-dev libopenblas-pthread-dev \
    libopenblas0-pthread libopenblas0 libgfortran5 libpcre2-dev libpcre2-8-0 libcmocka-dev libcmocka0 2>/dev/null)
tar cJf .carry/data/data.tar.xz -C "$(dirname "$data")" "$(basename "$data")"
gguf=$(scripts/fetch_smollm2.sh)
split -b "${part_mb}m" -d -a 1 "$gguf" .carry/smol.part
n=0
for p in .carry/smol.part*; do
    n=$((n + 1))
    mkdir -p ".carry/smol$n"
    mv "$p" ".carry/smol$n/"
done
git rev-parse --short HEAD > COMMIT
sha=$(sha256sum "$gguf" | cut -c1-16)
du -sh .carry/* COMMIT
cat <<MSG

Stage on the GPU machine (it stays warm 30 s between calls): one call per part but the last, e.g.
  carry [".carry/smol1"]  command: mkdir -p /root/stage && cp .carry/smol1/* /root/stage/
and then, with the last part (.carry/smol$n):
  carry [".carry/smol$n", ".carry/debs", ".carry/data", "COMMIT"]  command:
    mkdir -p /root/stage models && cp .carry/smol$n/* /root/stage/ &&
    cat /root/stage/smol.part* > models/SmolLM2-135M-Instruct.Q4_1.gguf && sha256sum models/*.gguf | cut -c1-16 &&
    mkdir -p /root/d && tar xJf .carry/data/data.tar.xz -C /root/d &&
    LOP_DEBS=.carry/debs OUT=\$OUT scripts/gpu_check.sh build test
  (the sha256 must begin $sha); later calls carry .carry/debs, .carry/data and COMMIT again (a carried
  path is replaced, not kept) and run e.g.
    LOP_DATA=/root/d/$(basename "$data") LOP_DEBS=.carry/debs OUT=\$OUT scripts/gpu_check.sh bench
MSG
