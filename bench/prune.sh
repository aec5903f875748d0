#!/bin/sh
# make bench, pruning: the cost of the pruning workflow itself (issue
# targets in brackets): dependency groups of the ViT sample (163 nodes)
# [< 10 ms], apply of a 50% plan [< 50 ms plus the weight copies], and a
# full sensitivity sweep of fmnist-resnet, every group x 9 ratios on 1,000
# validation images, on 2 threads [< 60 s].
# Usage: bench/prune.sh BUILD_DIR
set -u
build=${1:-build}
bin=$build/shears
model() { if [ -f "samples/$1.onnx" ]; then echo "load samples/$1.onnx"; else echo "build samples/$1.json"; fi; }
echo
echo "pruning workflow (each the best of 3 runs)"
echo
echo "| step | model | time | target |"
echo "|---|---|---|---|"
best() { sort -g | head -1; }
g=$(for i in 1 2 3; do "$bin" -c "$(model fmnist-vit); groups" | sed -n 's/.*(built in \([0-9.]*\) ms).*/\1/p'; done | best)
echo "| dependency groups | fmnist-vit (163 nodes) | $g ms | < 10 ms |"
t=$(for i in 1 2 3; do "$bin" --threads 1 -c "$(model fmnist-cnn); data fashion-mnist limit=1000; score taylor batches=8" |
    sed -n 's/^scored .* in \([0-9.]*\) s .*/\1/p'; done | best)
echo "| score taylor, 8 batches of 64, 1 thread | fmnist-cnn | $t s | < 1 s |"
for m in fmnist-cnn fmnist-resnet fmnist-vit; do
    a=$(for i in 1 2 3; do "$bin" -c "$(model $m); score l1; prune ratio=0.5; apply" | sed -n 's/^applied: .* in \([0-9.]*\) ms.*/\1/p'; done | best)
    echo "| apply 50% of every group (surgery with weight copies; verify and bias compensation not included) | $m | $a ms | < 50 ms |"
done
s=$("$bin" --threads 2 -c "$(model fmnist-resnet); data fashion-mnist val=0.1 seed=1; score l1; \
sensitivity ratios=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9 batches=10 batch=100" | sed -n 's/^\([0-9.]*\) s on [0-9]* threads.*/\1/p')
echo "| sensitivity, all groups x 9 ratios, 1,000 val images, 2 threads | fmnist-resnet | $s s | < 60 s |"
