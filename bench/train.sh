#!/bin/sh
# make bench, training: images/s of one training step (forward, loss,
# backward, SGD) of each sample architecture at batch 128, 1 and 2
# threads, in shears (bench/bench_train.c) and in Debian's PyTorch
# (bench/torch_train.py, when /usr/bin/python3 has torch) in the same run,
# interleaved per row so drifting load hits both.
# Usage: bench/train.sh BUILD_DIR
set -u
build=${1:-build}
bt=$build/bench/bench_train
steps=${BENCH_STEPS:-30}
field() { echo "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
have_torch=0
/usr/bin/python3 -c "import torch" 2>/dev/null && have_torch=1
echo
echo "training throughput, batch 128, median of $steps steps after 3 warm-up steps (images/s; higher is better)"
echo "PyTorch: $([ $have_torch = 1 ] && /usr/bin/python3 -c 'import torch; print(torch.__version__)' || echo 'not installed (sudo apt-get install python3-torch)'); best of default and tuned glibc malloc"
echo
echo "| model | threads | shears img/s | PyTorch img/s | shears/PyTorch |"
echo "|---|---|---|---|---|"
for arch in samples/fmnist-cnn.json samples/fmnist-resnet.json samples/fmnist-vit.json; do
    name=$(basename "$arch" .json)
    for t in 1 2; do
        s=$("$bt" "$arch" --threads "$t" --steps "$steps" 2>/dev/null) || { echo "| $name | $t | failed | | |"; continue; }
        si=$(field images_per_s "$s")
        pi=""
        if [ $have_torch = 1 ]; then
            pi=$(/usr/bin/python3 bench/torch_train.py --arch "$arch" --threads "$t" --steps "$steps" 2>/dev/null |
                 sed -n 's/.*"img_per_s": \([0-9.]*\).*/\1/p' | sort -g | tail -1)
        fi
        if [ -n "$pi" ]; then
            printf "| %s | %s | %.0f | %.0f | %.2f |\n" "$name" "$t" "$si" "$pi" "$(awk -v a="$si" -v b="$pi" 'BEGIN { print a / b }')"
        else
            printf "| %s | %s | %.0f | - | - |\n" "$name" "$t" "$si"
        fi
    done
done
