#!/bin/sh
# The main job of `make run`. On a terminal: open the workbench on the
# bundled sample model with Fashion-MNIST loaded. Otherwise (a script, a
# pipe, CI) the headless job: describe the sample, and evaluate it on
# Fashion-MNIST.
set -e
bin=${1:-build/shears}
if [ -f samples/fmnist-cnn.onnx ]; then
    if [ -t 0 ] && [ -t 1 ]; then
        exec "$bin" samples/fmnist-cnn.onnx --data fashion-mnist
    fi
    exec "$bin" -c 'load samples/fmnist-cnn.onnx; info; data fashion-mnist split=test; eval'
fi
model=/usr/share/libonnx-testdata/data/pytorch-converted/test_Conv2d_groups/model.onnx
if [ -t 0 ] && [ -t 1 ]; then
    exec "$bin" "$model"
fi
exec "$bin" -c "load $model; info"
