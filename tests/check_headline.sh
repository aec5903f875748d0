#!/bin/sh
# A small version of the headline (samples/prune-cnn.shears): the trained
# CNN sample pruned to <= 50% of its MACs with Taylor scores, fine-tuned
# two epochs on a 9,000-sample subset with the original as teacher, loses
# at most 1.5 points on 2,000 test images (the full script, 3 epochs on
# 54,000, is held to 0.5); the pruned export runs in ONNX Runtime with
# shears' outputs.
# Usage: tests/check_headline.sh BUILD_DIR
set -u
build=${1:-build}
bin=$build/shears
work=$(mktemp -d "${TMPDIR:-/tmp}/shears-headline.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
fail() { echo "headline: FAIL $*"; exit 1; }
"$bin" --threads 1 -c "load samples/fmnist-cnn.onnx; data fashion-mnist limit=10000 val=0.1 seed=1; \
eval split=test limit=2000; score taylor batches=8; prune macs=0.5 scope=global round_to=16; apply; \
finetune epochs=2 distill=4 seed=1; eval split=test limit=2000; export $work/pruned.onnx" >"$work/log" 2>&1 ||
    fail "the pruning session failed: $(tail -1 "$work/log")"
acc() { grep '^eval test:' "$work/log" | sed -n "$1p" | sed 's/.*accuracy \([0-9.]*\)%.*/\1/'; }
before=$(acc 1) after=$(acc 2)
macs=$(grep -o 'MACs [^ ]* -> [^ ]* ([0-9.]*%)' "$work/log" | tail -1 | sed 's/.*(\([0-9.]*\)%)/\1/')
[ -n "$before" ] && [ -n "$after" ] && [ -n "$macs" ] || fail "no accuracy or MACs in the log: $(tail -3 "$work/log")"
echo "headline (small): MACs ${macs}% of the original, test accuracy $before% -> $after% after 2 epochs"
awk -v m="$macs" 'BEGIN { exit !(m <= 50) }' || fail "MACs ${macs}% > 50%"
awk -v a="$before" -v b="$after" 'BEGIN { exit !(b >= a - 1.5) }' || fail "accuracy fell from $before% to $after%"
grep -q '^verify: .*: ok$' "$work/log" || fail "apply did not verify: $(grep '^verify' "$work/log")"
if ! command -v node >/dev/null 2>&1 || [ ! -d tests/ort/node_modules/onnxruntime-node ]; then
    echo "headline: ONNX Runtime leg skipped (needs node and make ort-deps)"
    exit 0
fi
node -e "
const { writeNpy } = require('./tests/ort/npy');
let s = 7; const d = new Float32Array(4 * 28 * 28);
for (let i = 0; i < d.length; i++) { s = (s * 1103515245 + 12345) % 2147483648; d[i] = s / 2147483648 * 4 - 1; }
writeNpy('$work/x.npy', 'float32', [4, 1, 28, 28], d);" || fail "could not write the input"
"$bin" -c "load $work/pruned.onnx; run input=$work/x.npy output=$work/shears.npy" >/dev/null 2>&1 ||
    fail "shears cannot run its export"
node tests/ort/run.js "$work/pruned.onnx" "$work/x.npy" --out "$work/ort.npy" || fail "ONNX Runtime cannot run the export"
res=$("$build/tests/npycmp" --atol 1e-4 --rtol 1e-4 "$work/shears.npy" "$work/ort.npy" 2>&1) ||
    fail "ONNX Runtime and shears differ on the pruned export: $res"
echo "headline: the pruned export runs in ONNX Runtime with shears' outputs ($res)"
