#!/usr/bin/env node
'use strict';
// Runs an ONNX model in ONNX Runtime on NPY inputs and writes NPY outputs.
//   node tests/ort/run.js MODEL.onnx IN0.npy [IN1.npy ...] --out OUT0.npy [OUT1.npy ...] [--threads N]
// Inputs are matched to the graph inputs in declaration order, outputs to
// the graph outputs in declaration order (fewer --out files than outputs
// writes only the first ones). Output files are replaced if they exist.
// Exits non-zero with one line on stderr on any error.

const fs = require('fs');
const { readNpy, writeNpy, NpyError } = require('./npy');

const USAGE = 'usage: run.js MODEL.onnx IN0.npy [IN1.npy ...] --out OUT0.npy [OUT1.npy ...] [--threads N]';

function die(msg) {
  process.stderr.write(`run.js: ${String(msg).split('\n')[0]}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const a = { model: null, inputs: [], outputs: [], threads: 1 };
  let list = null;
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s === '--out') {
      list = a.outputs;
    } else if (s === '--threads') {
      const v = argv[++i];
      if (!/^[1-9]\d*$/.test(v || '')) die(`--threads needs a positive integer, not '${v === undefined ? '' : v}'`);
      a.threads = Number(v);
    } else if (s.startsWith('--')) {
      die(`unknown option ${s}; ${USAGE}`);
    } else if (!a.model) {
      a.model = s;
      list = a.inputs;
    } else {
      list.push(s);
    }
  }
  if (!a.model) die(USAGE);
  if (a.outputs.length === 0) die(`no --out files; ${USAGE}`);
  return a;
}

function loadOrt() {
  try {
    return require('onnxruntime-node');
  } catch (e) {
    die(`onnxruntime-node is not installed (run make ort-deps): ${e.message}`);
  }
  return null;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(args.model)) die(`cannot open ${args.model}: no such file`);
  const ort = loadOrt();
  let session;
  try {
    session = await ort.InferenceSession.create(args.model, {
      intraOpNumThreads: args.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      logSeverityLevel: 3,
    });
  } catch (e) {
    die(`${args.model}: ONNX Runtime cannot load it: ${e.message}`);
  }
  const inNames = session.inputNames;
  const outNames = session.outputNames;
  if (args.inputs.length !== inNames.length)
    die(`${args.model} has ${inNames.length} inputs (${inNames.join(', ')}) but ${args.inputs.length} NPY files were given`);
  if (args.outputs.length > outNames.length)
    die(`${args.model} has ${outNames.length} outputs (${outNames.join(', ')}) but ${args.outputs.length} --out files were given`);

  const meta = session.inputMetadata || [];
  const feeds = {};
  args.inputs.forEach((file, i) => {
    const t = readNpy(file);
    const want = meta[i] && meta[i].isTensor ? meta[i].type : null;
    if (want && want !== t.type) die(`${file}: input '${inNames[i]}' wants ${want} but the file holds ${t.type}`);
    feeds[inNames[i]] = new ort.Tensor(t.type, t.data, t.dims);
  });

  const fetch = outNames.slice(0, args.outputs.length);
  let results;
  try {
    results = await session.run(feeds, fetch);
  } catch (e) {
    die(`${args.model}: ONNX Runtime failed: ${e.message}`);
  }
  fetch.forEach((name, i) => {
    const v = results[name];
    if (!v || typeof v.dims === 'undefined') die(`output '${name}' is not a tensor`);
    writeNpy(args.outputs[i], v.type, Array.from(v.dims), v.data);
  });
}

main().catch((e) => die(e instanceof NpyError ? e.message : e && e.message ? e.message : e));
