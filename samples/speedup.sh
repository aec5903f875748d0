#!/bin/sh
# Times an original and a pruned ONNX model at one batch size, in shears
# (build/bench/bench_forward, `make bench` builds it) and in ONNX Runtime
# (npm onnxruntime-node, `make ort-deps`), alternating the two models, and
# prints each median (the better of two alternated runs of 30 timed
# iterations after 5 warm-up runs) and the speedups.
#   samples/speedup.sh ORIGINAL.onnx PRUNED.onnx [BATCH] [THREADS]
set -eu
cd "$(dirname "$0")/.."
orig=$1 pruned=$2 batch=${3:-64} threads=${4:-1}
bf=${BUILD:-build}/bench/bench_forward
js=tests/ort/bench.js
[ -x "$bf" ] || { echo "speedup: $bf is missing (make bench, or make $bf)"; exit 1; }
[ -d tests/ort/node_modules/onnxruntime-node ] || { echo "speedup: run make ort-deps first"; exit 1; }
med() { sed 's/.*"median_ms":\([0-9.]*\).*/\1/'; }
shears() { "$bf" "$1" --batch "$batch" --threads "$threads" --iters 30 --warmup 5 | med; }
ort() { node "$js" "$1" --batch "$batch" --threads "$threads" --iters 30 --warmup 5 --input-shape 1,28,28 | med; }
best() { printf '%s\n%s\n' "$1" "$2" | sort -g | head -1; }
ratio() { echo "$1 $2" | awk '{printf "%.2f", $1 / $2}'; }
s1=$(shears "$orig"); s2=$(shears "$pruned"); s3=$(shears "$orig"); s4=$(shears "$pruned")
o1=$(ort "$orig"); o2=$(ort "$pruned"); o3=$(ort "$orig"); o4=$(ort "$pruned")
sa=$(best "$s1" "$s3") sb=$(best "$s2" "$s4") oa=$(best "$o1" "$o3") ob=$(best "$o2" "$o4")
echo "batch $batch, $threads thread(s): shears $sa -> $sb ms ($(ratio "$sa" "$sb")x), ONNX Runtime $oa -> $ob ms ($(ratio "$oa" "$ob")x)  [$orig -> $pruned]"
