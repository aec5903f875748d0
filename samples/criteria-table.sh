#!/bin/sh
# Each criterion against the random control at the same ratio, before and
# after fine-tuning, on a trained sample. Prints a Markdown table.
#   samples/criteria-table.sh [MODEL.onnx] [RATIO] [EPOCHS]
# Every criterion prunes RATIO of every group's units (scope=local, so all
# criteria remove the same number of units from the same layers), then
# fine-tunes EPOCHS epochs (SGD, distillation from the unpruned model).
set -eu
cd "$(dirname "$0")/.."
model=${1:-samples/fmnist-cnn.onnx}
ratio=${2:-0.3}
epochs=${3:-1}
bin=${SHEARS:-build/shears}
criteria=${CRITERIA:-"random l1 l2 fpgm bn taylor fisher act apoz wanda"}
[ -x "$bin" ] || { echo "criteria-table: $bin is missing (make)"; exit 1; }
log=$(mktemp "${TMPDIR:-/tmp}/shears-criteria.XXXXXX")
trap 'rm -f "$log"' EXIT
acc() { grep '^eval test:' "$log" | sed -n "$1p" | sed 's/.*accuracy \([0-9.]*\)%.*/\1/'; }
echo "model $model, ratio $ratio per group (local), fine-tune $epochs epoch(s) with distill=4, test accuracy (%)"
echo
echo "| criterion | MACs after | before fine-tune | after fine-tune |"
echo "|---|---|---|---|"
for c in $criteria; do
    "$bin" --threads "${THREADS:-1}" -c "load $model; data fashion-mnist val=0.1 seed=1; score $c batches=16; \
prune ratio=$ratio scope=local; apply; eval split=test; finetune epochs=$epochs distill=4 seed=1; \
eval split=test" >"$log" 2>&1 || { echo "| $c | failed: $(tail -1 "$log") | | |"; continue; }
    macs=$(grep -o 'MACs [^ ]* -> [^ ]* ([0-9.]*%)' "$log" | head -1 | sed 's/.*(\(.*\))/\1/')
    echo "| $c | $macs | $(acc 1) | $(acc 2) |"
done
base=$("$bin" -c "load $model; data fashion-mnist; eval split=test" 2>&1 | grep '^eval test:' | sed 's/.*accuracy \([0-9.]*\)%.*/\1/')
echo
echo "unpruned: $base%"
