#!/usr/bin/env node
'use strict';
// Runs an ONNX model in ONNX Runtime on NPY inputs and writes NPY outputs.
//   node tests/ort/run.js MODEL.onnx IN0.npy [IN1.npy ...] --out OUT0.npy [OUT1.npy ...] [--threads N]
//   node tests/ort/run.js --batch LIST [--threads N]
// Inputs are matched to the graph inputs in declaration order, outputs to
// the graph outputs in declaration order (fewer --out files than outputs
// writes only the first ones). Output files are replaced if they exist.
// Exits non-zero with one line on stderr on any error.
// --batch runs many models in one process (starting ONNX Runtime once
// costs more than running a small model): every non-empty line of LIST is
// "MODEL IN... --out OUT..." (paths without blanks). A failing line prints
// its error line and the others still run; the exit status is 1 if any
// line failed.

const fs = require('fs');
const { readNpy, writeNpy, NpyError } = require('./npy');

const USAGE = 'usage: run.js MODEL.onnx IN0.npy [IN1.npy ...] --out OUT0.npy [OUT1.npy ...] [--threads N] | run.js --batch LIST [--threads N]';

class RunError extends Error {}

function die(msg) {
  process.stderr.write(`run.js: ${String(msg).split('\n')[0]}\n`);
  process.exit(1);
}

function fail(msg) {
  throw new RunError(msg);
}

function parseThreads(v) {
  if (!/^[1-9]\d*$/.test(v || '')) die(`--threads needs a positive integer, not '${v === undefined ? '' : v}'`);
  return Number(v);
}

function parseArgs(argv) {
  const a = { model: null, inputs: [], outputs: [], threads: 1, batch: null };
  let list = null;
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s === '--out') {
      list = a.outputs;
    } else if (s === '--threads') {
      a.threads = parseThreads(argv[++i]);
    } else if (s === '--batch') {
      a.batch = argv[++i];
      if (!a.batch) die(`--batch needs a list file; ${USAGE}`);
    } else if (s.startsWith('--')) {
      die(`unknown option ${s}; ${USAGE}`);
    } else if (!a.model) {
      a.model = s;
      list = a.inputs;
    } else {
      list.push(s);
    }
  }
  if (a.batch) {
    if (a.model) die(`--batch takes no model on the command line; ${USAGE}`);
    return a;
  }
  if (!a.model) die(USAGE);
  if (a.outputs.length === 0) die(`no --out files; ${USAGE}`);
  return a;
}

// One line of a --batch list: "MODEL IN... --out OUT...".
function parseJob(line, where) {
  const words = line.trim().split(/\s+/);
  const job = { model: words[0], inputs: [], outputs: [] };
  let list = job.inputs;
  for (const w of words.slice(1)) {
    if (w === '--out') list = job.outputs;
    else if (w.startsWith('--')) fail(`${where}: unknown option ${w}`);
    else list.push(w);
  }
  if (job.outputs.length === 0) fail(`${where}: no --out files`);
  return job;
}

let ort = null;
function loadOrt() {
  if (ort) return ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    die(`onnxruntime-node is not installed (run make ort-deps): ${e.message}`);
  }
  return ort;
}

async function runJob(job, threads) {
  if (!fs.existsSync(job.model)) fail(`cannot open ${job.model}: no such file`);
  const rt = loadOrt();
  let session;
  try {
    session = await rt.InferenceSession.create(job.model, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      logSeverityLevel: 3,
    });
  } catch (e) {
    fail(`${job.model}: ONNX Runtime cannot load it: ${e.message}`);
  }
  try {
    const inNames = session.inputNames;
    const outNames = session.outputNames;
    if (job.inputs.length !== inNames.length)
      fail(`${job.model} has ${inNames.length} inputs (${inNames.join(', ')}) but ${job.inputs.length} NPY files were given`);
    if (job.outputs.length > outNames.length)
      fail(`${job.model} has ${outNames.length} outputs (${outNames.join(', ')}) but ${job.outputs.length} --out files were given`);

    const meta = session.inputMetadata || [];
    const feeds = {};
    job.inputs.forEach((file, i) => {
      const t = readNpy(file);
      const want = meta[i] && meta[i].isTensor ? meta[i].type : null;
      if (want && want !== t.type) fail(`${file}: input '${inNames[i]}' wants ${want} but the file holds ${t.type}`);
      feeds[inNames[i]] = new rt.Tensor(t.type, t.data, t.dims);
    });

    const fetch = outNames.slice(0, job.outputs.length);
    let results;
    try {
      results = await session.run(feeds, fetch);
    } catch (e) {
      fail(`${job.model}: ONNX Runtime failed: ${e.message}`);
    }
    fetch.forEach((name, i) => {
      const v = results[name];
      if (!v || typeof v.dims === 'undefined') fail(`output '${name}' is not a tensor`);
      writeNpy(job.outputs[i], v.type, Array.from(v.dims), v.data);
    });
  } finally {
    if (session.release) await session.release();
  }
}

function message(e) {
  const m = e instanceof RunError || e instanceof NpyError ? e.message : e && e.message ? e.message : String(e);
  return String(m).split('\n')[0];
}

async function runBatch(file, threads) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    die(`cannot read ${file}: ${e.code || e.message}`);
  }
  let failed = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    try {
      await runJob(parseJob(lines[i], `${file}:${i + 1}`), threads);
    } catch (e) {
      process.stderr.write(`run.js: ${message(e)}\n`);
      failed++;
    }
  }
  if (failed) process.exit(1);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.batch) return runBatch(args.batch, args.threads);
  try {
    await runJob(args, args.threads);
  } catch (e) {
    die(message(e));
  }
  return undefined;
}

main().catch((e) => die(message(e)));
