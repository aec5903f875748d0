#!/bin/sh
# Real torch.onnx.export models (tests/fixtures/pytorch, made by gen.py
# there with PyTorch 1.13) through shears: every output must match what
# PyTorch computed, |shears - torch| <= 1e-4 + 1e-4 * |torch| (the
# tolerances are on each line of manifest.txt). Dynamic-batch models run at
# batch 1 and 3 through one loaded model; every model also runs without
# executor fusions and after an export/import round trip. One line per
# model with its max abs diff, then a summary.
#
# Then, if ONNX Runtime is installed (make ort-deps), the model shears
# exports from each fixture runs in ONNX Runtime and must match PyTorch's
# outputs within the same tolerances.
#
# Usage: tests/check_pytorch.sh BUILD_DIR
set -u
build=${1:-build}
tool=$build/tests/pytorch_compare
fixtures=$(dirname "$0")/fixtures/pytorch
manifest=$fixtures/manifest.txt
ortdir=$(dirname "$0")/ort
if [ ! -x "$tool" ]; then
    echo "pytorch: $tool is missing (make BUILD=$build all-tests)"
    exit 1
fi
out=$(OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} "$tool" "$manifest" 2>&1)
rc=$?
echo "$out" | sed '$!s/^/  /'
[ $rc -eq 0 ] || exit 1

if ! command -v node >/dev/null 2>&1 || [ ! -d "$ortdir/node_modules/onnxruntime-node" ] ||
   [ ! -x "$build/shears" ] || [ ! -x "$build/tests/npycmp" ]; then
    echo "pytorch: ONNX Runtime leg skipped (needs node, make ort-deps, $build/shears, $build/tests/npycmp)"
    exit 0
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/shears-pytorch.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
fail=0
: >"$work/jobs"
: >"$work/pairs"
prev=
grep -v '^#' "$manifest" | while read -r model atol rtol ins outs; do
    [ -n "$model" ] || continue
    if [ "$model" != "$prev" ] &&
       ! "$build/shears" -c "load \"$fixtures/$model\"; export \"$work/$model\"" >"$work/log" 2>&1; then
        echo "  FAIL $model: shears cannot export it: $(head -2 "$work/log")"
        echo fail >>"$work/failed"
    fi
    prev=$model
    line="$work/$model"
    for f in $(echo "$ins" | tr ',' ' '); do line="$line $fixtures/$f"; done
    line="$line --out"
    for f in $(echo "$outs" | tr ',' ' '); do
        line="$line $work/ort.$f"
        echo "$model $atol $rtol $work/ort.$f $fixtures/$f" >>"$work/pairs"
    done
    echo "$line" >>"$work/jobs"
done
[ -f "$work/failed" ] && fail=1
node "$ortdir/run.js" --batch "$work/jobs" 2>"$work/ort-err" || {
    sed 's/^/  FAIL ONNX Runtime: /' "$work/ort-err"
    fail=1
}
n=0
while read -r model atol rtol got want; do
    n=$((n + 1))
    [ -f "$got" ] || continue # reported above
    res=$("$build/tests/npycmp" --atol "$atol" --rtol "$rtol" "$got" "$want" 2>&1) || {
        echo "  FAIL $model: ONNX Runtime on shears' export vs PyTorch, $(basename "$want"): $res"
        fail=1
    }
done <"$work/pairs"
if [ $fail -eq 0 ]; then
    echo "pytorch: ONNX Runtime on shears' exports matched PyTorch on all $n outputs"
else
    echo "pytorch: ONNX Runtime on shears' exports: failures listed above"
fi
exit $fail
