'use strict';
// Minimal NPY reader/writer for the ONNX Runtime bridge: versions 1.0-3.0
// on read, 1.0 on write (laid out as numpy writes it), C order only.

const fs = require('fs');
const path = require('path');

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

// NPY descr <-> onnxruntime tensor type and typed array.
const TYPES = [
  { descr: '<f4', ort: 'float32', size: 4, Array: Float32Array },
  { descr: '<i8', ort: 'int64', size: 8, Array: BigInt64Array },
  { descr: '<i4', ort: 'int32', size: 4, Array: Int32Array },
  { descr: '|u1', ort: 'uint8', size: 1, Array: Uint8Array },
  { descr: '|b1', ort: 'bool', size: 1, Array: Uint8Array },
];

class NpyError extends Error {}

function fail(file, msg) {
  throw new NpyError(`${file}: ${msg}`);
}

// Parses the header dict strictly enough: the three keys numpy writes.
function parseDict(file, text) {
  const t = text.trim();
  if (!t.startsWith('{') || !t.endsWith('}')) fail(file, 'malformed NPY header: not a dict');
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(t);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(t);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(t);
  if (!descr || !fortran || !shape) fail(file, 'malformed NPY header: needs descr, fortran_order and shape');
  if (fortran[1] === 'True') fail(file, 'Fortran-order NPY arrays are not supported');
  const dims = shape[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      if (!/^\d+L?$/.test(s)) fail(file, `malformed NPY header: bad dimension '${s}'`);
      return Number.parseInt(s, 10);
    });
  const type = TYPES.find((x) => x.descr === descr[1]);
  if (!type) fail(file, `NPY dtype '${descr[1]}' is not supported (use ${TYPES.map((x) => x.descr).join(', ')})`);
  return { type, dims };
}

// Returns { type: 'float32'|..., dims: [..], data: TypedArray }.
function readNpy(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    fail(file, `cannot read: ${e.code || e.message}`);
  }
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) fail(file, 'not an NPY file');
  const major = buf[6];
  if (major < 1 || major > 3 || buf[7] !== 0) fail(file, `NPY version ${major}.${buf[7]} is not supported`);
  const prefix = major === 1 ? 10 : 12;
  if (buf.length < prefix) fail(file, 'truncated NPY header');
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  if (buf.length < prefix + hlen) fail(file, 'truncated NPY header');
  const text = buf.subarray(prefix, prefix + hlen).toString(major === 3 ? 'utf8' : 'latin1');
  const { type, dims } = parseDict(file, text);
  const numel = dims.reduce((a, b) => a * b, 1);
  const want = numel * type.size;
  const have = buf.length - prefix - hlen;
  if (have !== want) fail(file, `expected ${want} bytes of array data, got ${have}`);
  // Copy so the typed array is aligned whatever the header length.
  const data = new type.Array(numel);
  Buffer.from(data.buffer).set(buf.subarray(prefix + hlen));
  return { type: type.ort, dims, data };
}

function header(type, dims) {
  let shape = dims.join(', ');
  if (dims.length === 1) shape += ',';
  let dict = `{'descr': '${type.descr}', 'fortran_order': False, 'shape': (${shape}), }`;
  if (dims.length > 0) dict += ' '.repeat(Math.max(0, 21 - String(dims[0]).length));
  const pad = 64 - ((10 + dict.length + 1) % 64);
  const text = dict + ' '.repeat(pad) + '\n';
  const head = Buffer.alloc(10);
  MAGIC.copy(head, 0);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(text.length, 8);
  return Buffer.concat([head, Buffer.from(text, 'latin1')]);
}

// Writes an NPY 1.0 file atomically (temporary file + rename).
function writeNpy(file, ortType, dims, data) {
  const type = TYPES.find((x) => x.ort === ortType);
  if (!type) fail(file, `cannot write ${ortType} data as NPY`);
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  try {
    fs.writeFileSync(tmp, Buffer.concat([header(type, dims), bytes]));
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch (_) {
      /* nothing to clean */
    }
    fail(file, `cannot write: ${e.code || e.message}`);
  }
}

module.exports = { readNpy, writeNpy, NpyError, TYPES };
