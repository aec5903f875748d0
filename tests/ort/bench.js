#!/usr/bin/env node
'use strict';
// Times ONNX Runtime's session.run on seeded random input.
//   node tests/ort/bench.js MODEL.onnx --batch B --threads T --iters N --warmup W
//        [--input-shape 1,28,28] [--seed S]
// --input-shape gives the dims after the batch dim of the first input (needed
// when they are symbolic). intra-op threads T, inter-op 1. Prints one JSON
// line: {"median_ms":..,"min_ms":..,"max_ms":..,"iters":..,"batch":..,"threads":..}
// with "fixed_batch":K added when the model's batch dim is fixed at K != B
// (then batch K is timed). Exits non-zero with one line on stderr on error.

const fs = require('fs');

const USAGE =
  'usage: bench.js MODEL.onnx --batch B --threads T --iters N --warmup W [--input-shape 1,28,28] [--seed S]';

function die(msg) {
  process.stderr.write(`bench.js: ${String(msg).split('\n')[0]}\n`);
  process.exit(1);
}

function intArg(name, v, min) {
  if (!/^\d+$/.test(v || '') || Number(v) < min) die(`${name} needs an integer >= ${min}, not '${v === undefined ? '' : v}'`);
  return Number(v);
}

function parseArgs(argv) {
  const a = { model: null, batch: 1, threads: 1, iters: 20, warmup: 3, shape: null, seed: 1 };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s === '--batch') a.batch = intArg(s, argv[++i], 1);
    else if (s === '--threads') a.threads = intArg(s, argv[++i], 1);
    else if (s === '--iters') a.iters = intArg(s, argv[++i], 1);
    else if (s === '--warmup') a.warmup = intArg(s, argv[++i], 0);
    else if (s === '--seed') a.seed = intArg(s, argv[++i], 0);
    else if (s === '--input-shape') {
      const v = argv[++i] || '';
      if (!/^\d+(,\d+)*$/.test(v)) die(`--input-shape needs dims like 1,28,28, not '${v}'`);
      a.shape = v.split(',').map(Number);
    } else if (s.startsWith('--')) die(`unknown option ${s}; ${USAGE}`);
    else if (!a.model) a.model = s;
    else die(`unexpected argument '${s}'; ${USAGE}`);
  }
  if (!a.model) die(USAGE);
  return a;
}

// mulberry32: a small seeded generator, so every run times the same input.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The dims to feed input i: batch first, then --input-shape (first input)
// or the model's own dims. Only the first input decides whether the batch
// is fixed; a later input with a fixed first dim (a weight fed as input)
// keeps it, a symbolic one follows the batch.
function inputDims(meta, i, args, info) {
  const shape = meta.shape || [];
  if (shape.length === 0) die(`input '${meta.name}' has no declared shape`);
  const d0 = shape[0];
  let batch = info.fixed_batch || args.batch;
  if (typeof d0 === 'number' && d0 > 0 && d0 !== batch) {
    if (i === 0) info.fixed_batch = d0;
    batch = d0;
  }
  let rest = shape.slice(1);
  if (i === 0 && args.shape) {
    if (args.shape.length !== rest.length)
      die(`--input-shape has ${args.shape.length} dims but input '${meta.name}' has ${rest.length} after the batch`);
    rest.forEach((d, k) => {
      if (typeof d === 'number' && d > 0 && d !== args.shape[k])
        die(`--input-shape dim ${k + 1} is ${args.shape[k]} but input '${meta.name}' fixes it at ${d}`);
    });
    rest = args.shape;
  }
  rest.forEach((d) => {
    if (typeof d !== 'number' || d < 0)
      die(`input '${meta.name}' has symbolic dim '${d}' after the batch; give --input-shape`);
  });
  return [batch, ...rest];
}

function randomTensor(ort, meta, dims, next) {
  const n = dims.reduce((a, b) => a * b, 1);
  switch (meta.type) {
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from({ length: n }, next), dims);
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(n), dims);
    case 'uint8':
      return new ort.Tensor('uint8', Uint8Array.from({ length: n }, () => Math.floor(next() * 256)), dims);
    default:
      die(`input '${meta.name}' has type ${meta.type}, which bench.js does not generate`);
  }
  return null;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(args.model)) die(`cannot open ${args.model}: no such file`);
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    die(`onnxruntime-node is not installed (run make ort-deps): ${e.message}`);
  }
  let session;
  try {
    session = await ort.InferenceSession.create(args.model, {
      intraOpNumThreads: args.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
  } catch (e) {
    die(`${args.model}: ONNX Runtime cannot load it: ${e.message}`);
  }
  const info = {};
  const next = rng(args.seed);
  const feeds = {};
  session.inputMetadata.forEach((meta, i) => {
    if (!meta.isTensor) die(`input '${meta.name}' is not a tensor`);
    feeds[meta.name] = randomTensor(ort, meta, inputDims(meta, i, args, info), next);
  });

  const times = [];
  try {
    for (let i = 0; i < args.warmup; i++) await session.run(feeds);
    for (let i = 0; i < args.iters; i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } catch (e) {
    die(`${args.model}: ONNX Runtime failed: ${e.message}`);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
  const round = (x) => Math.round(x * 1000) / 1000;
  const out = {
    median_ms: round(median),
    min_ms: round(times[0]),
    max_ms: round(times[times.length - 1]),
    iters: args.iters,
    batch: info.fixed_batch || args.batch,
    threads: args.threads,
  };
  if (info.fixed_batch) out.fixed_batch = info.fixed_batch;
  process.stdout.write(`${JSON.stringify(out)}\n`);
  await session.release();
}

main().catch((e) => die(e && e.message ? e.message : e));
