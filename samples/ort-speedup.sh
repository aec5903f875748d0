#!/bin/sh
# Times an original and a pruned ONNX model in ONNX Runtime (npm
# onnxruntime-node, `make ort-deps`) at one batch size, alternating the
# two, and prints both medians and the speedup.
#   samples/ort-speedup.sh ORIGINAL.onnx PRUNED.onnx [BATCH] [THREADS]
set -eu
cd "$(dirname "$0")/.."
orig=$1 pruned=$2 batch=${3:-64} threads=${4:-1}
js=tests/ort/bench.js
[ -d tests/ort/node_modules/onnxruntime-node ] || { echo "ort-speedup: run make ort-deps first"; exit 1; }
median() { node "$js" "$1" --batch "$batch" --threads "$threads" --iters 30 --warmup 5 --input-shape 1,28,28 |
           sed 's/.*"median_ms":\([0-9.]*\).*/\1/'; }
a1=$(median "$orig"); b1=$(median "$pruned"); a2=$(median "$orig"); b2=$(median "$pruned")
# the better of two alternated medians each: a burst of load hits one, not both
a=$(printf '%s\n%s\n' "$a1" "$a2" | sort -g | head -1)
b=$(printf '%s\n%s\n' "$b1" "$b2" | sort -g | head -1)
echo "ONNX Runtime, batch $batch, $threads thread(s): $orig $a ms, $pruned $b ms, speedup $(echo "$a $b" | awk '{printf "%.2f", $1 / $2}')x"
