#!/bin/sh
# Runs every test binary under BUILD/tests, sums cmocka's per-binary summaries and prints the one
# closing line CI reads: "N passed, N failed[, N skipped]". A binary that dies without a summary
# counts as one failure, so a crash can never pass silently.
BUILD=${1:-build}
export LOP_BUILD="$BUILD"   # tests that run the CLI use the binary of this build
pass=0; fail=0; skip=0; bad=""
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed.*/\1/p' | tail -1)
    s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test(s), listed.*/\1/p' | tail -1)
    p=${p:-0}; f=${f:-0}; s=${s:-0}
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    [ "$f" -gt 0 ] && bad="$bad $(basename "$t")"
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
done
[ -n "$bad" ] && echo "failing binaries:$bad"
if [ "$skip" -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"; else echo "$pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
