#!/bin/sh
# Installs the Debian packages lop builds against, only when they are missing, so that
# `make test` and `make demo` work on a fresh Debian machine (run as root) and cost nothing after.
set -e
need=""
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
for p in gcc make pkg-config libcjson-dev libopenblas-dev libpcre2-dev libcmocka-dev python3-pip unzip gnuplot-nox; do
    have "$p" || need="$need $p"
done
[ -z "$need" ] && exit 0
echo "lop: installing missing packages:$need"
if [ "$(id -u)" != 0 ]; then echo "lop: need root to apt-get install:$need" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends $need >/dev/null
