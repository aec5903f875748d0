#!/bin/sh
# The headless main job of `make run` (until the TUI lands): describe the
# bundled sample model, and evaluate it on Fashion-MNIST when it is trained.
set -e
bin=${1:-build/shears}
if [ -f samples/fmnist-cnn.onnx ]; then
    exec "$bin" -c 'load samples/fmnist-cnn.onnx; info; data fashion-mnist split=test; eval'
fi
model=/usr/share/libonnx-testdata/data/pytorch-converted/test_Conv2d_groups/model.onnx
exec "$bin" -c "load $model; info"
