#!/bin/sh
# make bench: shears' forward latency beside ONNX Runtime on the same model
# file, same batch, same threads, run alternately in this one invocation,
# and the conv layers' GFLOP/s beside sgemm of the same GEMM shape.
# Usage: bench/run.sh BUILD_DIR
set -u
build=${1:-build}
bf=$build/bench/bench_forward
out=$build/bench
mkdir -p "$out/models"
iters=${BENCH_ITERS:-30}
warmup=${BENCH_WARMUP:-5}

field() { # field NAME JSON -> value
    echo "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "machine: $cpu, $(nproc) cores; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"

# Bundled models: the trained samples if present, else built from their
# architecture (weights do not change timing) and exported for ORT.
models=""
for arch in samples/fmnist-cnn samples/fmnist-resnet samples/fmnist-vit; do
    name=$(basename "$arch")
    if [ -f "$arch.onnx" ]; then
        models="$models $arch.onnx"
    else
        "$bf" "$arch.json" --iters 1 --warmup 0 --export "$out/models/$name.onnx" >/dev/null || exit 1
        models="$models $out/models/$name.onnx"
    fi
done

label() { # a model's name: the file's, or its folder's for .../NAME/model.onnx
    if [ "$(basename "$1")" = model.onnx ]; then basename "$(dirname "$1")"; else basename "$1" .onnx; fi | sed 's/^test_//'
}

row() { # row MODEL BATCH THREADS
    s=$("$bf" "$1" --batch "$2" --threads "$3" --iters "$iters" --warmup "$warmup" 2>/dev/null) || return 1
    o=$(node tests/ort/bench.js "$1" --batch "$2" --threads "$3" --iters "$iters" --warmup "$warmup" 2>/dev/null) || return 1
    sm=$(field median_ms "$s"); om=$(field median_ms "$o")
    ratio=$(awk -v a="$sm" -v b="$om" 'BEGIN { printf "%.2f", a / b }')
    rows=$(field batch "$s")
    ips=$(awk -v a="$sm" -v n="$rows" 'BEGIN { printf "%.0f", n / a * 1000 }')
    printf "| %s | %s | %s | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) | %s | %s |\n" \
        "$(label "$1")" "$rows" "$3" "$sm" "$(field min_ms "$s")" "$(field max_ms "$s")" \
        "$om" "$(field min_ms "$o")" "$(field max_ms "$o")" "$ratio" "$ips"
    echo "$ratio" >> "$out/ratios.$4"
}

header() {
    echo
    echo "| model | batch | threads | shears ms median (min-max) | ORT ms median (min-max) | shears/ORT | shears img/s |"
    echo "|---|---|---|---|---|---|---|"
}

rm -f "$out"/ratios.*
s=$("$bf" $(echo $models | cut -d' ' -f1) --iters 1 --warmup 0)
echo "BLAS core: $(field blas_core "$s"); ONNX Runtime $(node -e "console.log(require('./tests/ort/node_modules/onnxruntime-node').env.versions.common)" 2>/dev/null)"
echo "median of $iters runs after $warmup warm-up runs, timed inside each process"
header
for m in $models; do
    for b in 1 64; do
        for t in 1 2; do
            row "$m" $b $t bundled$b || echo "| $(basename "$m") | $b | $t | failed | | | |"
        done
    done
done

echo
echo "pytorch-converted conformance models (their fixed batch):"
header
for d in /usr/share/libonnx-testdata/data/pytorch-converted/*/; do
    m=$d/model.onnx
    "$bf" "$m" --iters 1 --warmup 0 >/dev/null 2>&1 || continue
    for t in 1 2; do
        row "$m" 1 $t conformance || true
    done
done

echo
for f in "$out"/ratios.*; do
    [ -f "$f" ] || continue
    sort -n "$f" | awk -v name="$(basename "$f" | sed 's/ratios.//')" \
        '{ v[NR] = $1 } END { printf "%s: median shears/ORT %.2f over %d rows (min %.2f, max %.2f)\n", name, v[int((NR + 1) / 2)], NR, v[1], v[NR] }'
done

echo
echo "conv/gemm layers at batch 64, 1 thread: achieved GFLOP/s vs sgemm of the same M x N x K in the same run"
echo "| model | node | op | ms | GFLOP/s | GEMM MxNxK | sgemm GFLOP/s | % of sgemm |"
echo "|---|---|---|---|---|---|---|---|"
for m in $models; do
    "$bf" "$m" --batch 64 --threads 1 --iters 10 --warmup 2 --profile 2>/dev/null | grep '"node"' |
    while read -r line; do
        g=$(field gflops "$line"); p=$(field sgemm_gflops "$line")
        gemm=$(echo "$line" | sed -n 's/.*"gemm":\[\([0-9,]*\)\].*/\1/p' | tr ',' 'x')
        printf "| %s | %s | %s | %s | %s | %s | %s | %.0f%% |\n" "$(basename "$m" .onnx)" "$(field node "$line")" \
            "$(field op "$line")" "$(field ms "$line")" "$g" "$gemm" "$p" "$(awk -v a="$g" -v b="$p" 'BEGIN { print 100 * a / b }')"
    done
done
