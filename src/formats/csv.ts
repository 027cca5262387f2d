// Numeric text tables (CSV, TSV, semicolon, whitespace-separated) as a streamed SampleSource.
//
// Hand-written byte scanner (csv-parse ran at ~10 MB/s here, this at >100 MB/s): the file is read in 1 MB chunks,
// only the current line crossing a chunk boundary is copied. Plain numeric lines go through a native loop when
// the addon is built (src/formats/native/csv.c: same values, several times faster); this scanner takes the rest.
// Decisions (README, convert section):
// - Delimiter: --delimiter, else the first of ',', '\t', ';' found in the first line, else runs of whitespace.
// - Header: --header/--no-header, else a header is assumed when a field of the first line is not a number.
// - Label: --label-col (0-based index, negative from the end, or a header name); default column 0. Labels must be
//   whole numbers and are stored as int64. Every other column is a feature, in file order, reshaped to --shape.
// - Features are stored as --x-dtype (default float32). Values that do not fit (uint8: not a whole number in
//   0..255; float16: beyond +-65504) are rounded/clamped and counted, and a warning names the first line.
// - A malformed line (wrong field count, empty field, non-number) is skipped and listed as "<file>:<line>" with
//   the reason; with --strict it is fatal. Blank lines and lines starting with '#' are ignored.
// - Line ends: '\n' or '\r\n'; a file whose first MB holds '\r' but no '\n' (old Mac) ends lines with '\r' (the
//   native loop is told which). A UTF-8 byte order mark is skipped.
import { open, stat } from 'node:fs/promises';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { FieldSpec } from '../core/dtype.ts';
import type { DType } from '../core/dtype.ts';
import { csvAddon } from './csv-native.ts';
import { SlimfitError } from '../core/errors.ts';
import { type PartSpec, type SampleBatch, type SampleSource, type SkippedInput } from '../core/source.ts';
import { tsWorker } from '../core/worker.ts';
import { doubleBuffered } from '../core/double-buffer.ts';

/** Options of the text reader (see the rules at the top of this file). */
export interface CsvOptions {
  labelCol?: string | number;
  shape?: number[];
  xDtype?: DType;
  header?: boolean;
  delimiter?: string;
  strict?: boolean;
  /** Samples per yielded batch (default: about 1 MB of x, at least 64; 4 MB batches peaked ~10 MB higher and noisier at the same speed). */
  batchRows?: number;
  /**
   * Threads parsing byte ranges (default 1: one thread parses the whole file while the caller writes the store;
   * 0 = parse on the calling thread). Measured on 2 cores, 1.09 GB MNIST-shaped CSV to a uint8 store: inline 4.0 s,
   * one parser thread 2.7 s, two 2.9 s; see bench/convert.ts. Each thread is a V8 isolate: +15 MB of peak RSS
   * (+35-45 MB when workers ran through tsx).
   * Files under 16 MB are parsed inline unless this is given.
   */
  workers?: number;
  /**
   * Only this part of the lines (`convert --part`): the data bytes are cut into `count` equal byte ranges, each
   * moved forward to the next line start, and a part holds the lines that start in its range (as Hadoop and Spark
   * split text files).
   */
  part?: PartSpec;
}

/** A CSV SampleSource that also reports value-range warnings after a pass. */
export interface CsvSource extends SampleSource {
  /** Warnings of the last complete pass (e.g. values clamped to uint8). */
  readonly warnings: string[];
}

/** Feature dtypes the text reader can store. */
export const CSV_X_DTYPES: readonly DType[] = ['uint8', 'float16', 'float32', 'float64'];

const NL = 10, CR = 13, SP = 32, TAB = 9, HASH = 35;
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);

/** Parse one number starting at b[i] (line ends at e); sets `scan.pos` to the end, or -1 if it is not a number. */
const scan = { pos: 0 };
function parseNumber(b: Uint8Array, i: number, e: number): number {
  const start = i;
  let neg = false;
  let c = b[i];
  if (c === 45 /* - */ || c === 43 /* + */) { neg = c === 45; i++; }
  let mant = 0;
  let digits = 0;
  let exp = 0;
  let any = false;
  while (i < e) {
    c = b[i] - 48;
    if (c < 0 || c > 9) break;
    mant = mant * 10 + c;
    if (mant !== 0) digits++;
    any = true;
    i++;
  }
  if (i < e && b[i] === 46 /* . */) {
    i++;
    while (i < e) {
      c = b[i] - 48;
      if (c < 0 || c > 9) break;
      mant = mant * 10 + c;
      if (mant !== 0) digits++;
      exp--;
      any = true;
      i++;
    }
  }
  if (any && i < e && (b[i] === 101 || b[i] === 69) /* e E */) {
    let j = i + 1;
    let eneg = false;
    if (j < e && (b[j] === 45 || b[j] === 43)) { eneg = b[j] === 45; j++; }
    let ev = 0;
    let eany = false;
    while (j < e) {
      c = b[j] - 48;
      if (c < 0 || c > 9) break;
      if (ev < 100000) ev = ev * 10 + c;
      eany = true;
      j++;
    }
    if (!eany) { scan.pos = -1; return NaN; }
    exp += eneg ? -ev : ev;
    i = j;
  }
  if (!any) return parseSpecial(b, start, e);
  scan.pos = i;
  if (digits <= 15 && mant <= 9007199254740991) {
    // Clinger's fast path: exact integer mantissa and an exact power of ten give a correctly rounded result.
    if (exp === 0) return neg ? -mant : mant;
    if (exp < 0 && exp >= -22) return neg ? -(mant / POW10[-exp]) : mant / POW10[-exp];
    if (exp > 0 && exp <= 22 && mant * POW10[exp] <= 9007199254740991) return neg ? -(mant * POW10[exp]) : mant * POW10[exp];
  }
  // Long or extreme numbers: let the JS engine's correctly rounded parser do it.
  return Number(Buffer.from(b.buffer, b.byteOffset + start, i - start).toString('latin1'));
}

function parseSpecial(b: Uint8Array, i: number, e: number): number {
  let j = i;
  while (j < e && b[j] !== 44 && b[j] !== 59 && b[j] !== TAB && b[j] !== SP && b[j] !== CR && b[j] !== NL) j++;
  const t = Buffer.from(b.buffer, b.byteOffset + i, j - i).toString('latin1').toLowerCase();
  const m = /^([+-]?)(nan|inf|infinity)$/.exec(t);
  if (!m) { scan.pos = -1; return NaN; }
  scan.pos = j;
  if (m[2] === 'nan') return NaN;
  return m[1] === '-' ? -Infinity : Infinity;
}

/** Round a double to IEEE half-precision bits (round to nearest even). */
export function floatToHalf(v: number): number {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const e = (x >>> 23) & 0xff;
  let m = x & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  let he = e - 127 + 15;
  if (he >= 0x1f) return sign | 0x7c00;
  if (he <= 0) {
    if (he < -10) return sign;
    m |= 0x800000;
    const shift = 14 - he;
    let hm = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (hm & 1))) hm++;
    return sign | hm;
  }
  let hm = m >>> 13;
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (hm & 1))) {
    hm++;
    if (hm === 0x400) { hm = 0; he++; if (he >= 0x1f) return sign | 0x7c00; }
  }
  return sign | (he << 10) | hm;
}

interface Layout {
  delim: number; // byte, or -1 for whitespace runs
  eol: number; // the line end byte: NL, or CR for a file with CR-only line ends
  start: number; // byte offset of the text: 3 after a UTF-8 byte order mark, else 0
  header: string[] | null;
  ncols: number;
  labelCol: number;
  firstLine: number; // 1-based line number of the first data line
  dataStart: number; // byte offset of the line after the header (of the first line when there is none)
}

function splitHeader(line: string, delim: number): string[] {
  const parts = delim < 0 ? line.trim().split(/[ \t]+/) : line.split(String.fromCharCode(delim));
  return parts.map((p) => p.trim().replace(/^"(.*)"$/, '$1'));
}

async function readLayout(path: string, opts: CsvOptions): Promise<Layout> {
  const fh = await open(path, 'r');
  let text: string;
  try {
    const buf = Buffer.alloc(1 << 20);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    text = buf.toString('latin1', 0, bytesRead);
  } finally {
    await fh.close();
  }
  const start = text.startsWith('\xef\xbb\xbf') ? 3 : 0;
  text = text.slice(start);
  const eol = !text.includes('\n') && text.includes('\r') ? CR : NL;
  const lines = text.split(String.fromCharCode(eol));
  let idx = lines.findIndex((l) => l.trim() !== '' && !l.startsWith('#'));
  if (idx < 0 || (idx === lines.length - 1 && text.length >= 1 << 20)) {
    throw new SlimfitError(idx < 0 ? 'no data lines found' : 'first line is longer than 1 MB', { file: path, hint: 'expected numeric text, one sample per line' });
  }
  const first = lines[idx].replace(/\r$/, '');
  let delim: number;
  if (opts.delimiter !== undefined) {
    const d = opts.delimiter === '\\t' || opts.delimiter === 'tab' ? '\t' : opts.delimiter;
    if (d === ' ' || d === 'whitespace') delim = -1;
    else if (d.length === 1) delim = d.charCodeAt(0);
    else throw new SlimfitError(`--delimiter must be one character (or "tab"/"whitespace"), got ${JSON.stringify(opts.delimiter)}`, { file: path });
  } else delim = first.includes(',') ? 44 : first.includes('\t') ? TAB : first.includes(';') ? 59 : -1;
  const fields = splitHeader(first, delim);
  const numeric = (s: string) => s !== '' && (!Number.isNaN(Number(s)) || /^[+-]?(nan|inf|infinity)$/i.test(s));
  const header = opts.header ?? !fields.every(numeric);
  const ncols = fields.length;
  let labelCol: number;
  const lc = opts.labelCol ?? 0;
  if (typeof lc === 'number' || /^-?\d+$/.test(lc)) {
    labelCol = Number(lc);
    if (labelCol < 0) labelCol += ncols;
    if (labelCol < 0 || labelCol >= ncols) throw new SlimfitError(`--label-col ${lc} is outside the ${ncols} columns`, { file: path, hint: 'columns are numbered from 0; negative numbers count from the end' });
  } else {
    if (!header) throw new SlimfitError(`--label-col ${JSON.stringify(lc)} is a name but the file has no header line`, { file: path, hint: 'give the column index instead' });
    labelCol = fields.indexOf(lc);
    if (labelCol < 0) throw new SlimfitError(`no column named ${JSON.stringify(lc)} in the header`, { file: path, hint: `columns: ${fields.slice(0, 20).join(', ')}${fields.length > 20 ? ', ...' : ''}` });
  }
  if (ncols < 2) throw new SlimfitError(`the first line has ${ncols} field(s); need a label and at least one feature`, { file: path, hint: 'check --delimiter' });
  // If there is a header, the first data line follows it (skipping blank/comment lines is done while parsing).
  const firstLine = header ? idx + 2 : idx + 1;
  let dataStart = start;
  for (let j = 0; j < firstLine - 1 && j < lines.length; j++) dataStart += lines[j].length + 1;
  return { delim, eol, start, header: header ? fields : null, ncols, labelCol, firstLine, dataStart };
}

/** One byte range of a text file to parse (whole lines), with what the layout says about its columns. */
export interface RangeJob {
  path: string;
  start: number;
  end: number;
  /** Line number (relative to the range) of the first data line: the header is skipped in range 0 only. */
  dataFrom: number;
  ncols: number;
  labelCol: number;
  delim: number;
  /** Line end byte (NL, or CR for CR-only files). */
  eol: number;
  xDtype: DType;
  batchRows: number;
}

/** Parsed samples of a range; skipped line numbers are relative to the range's first line (1-based). */
export interface RangeBatch {
  n: number;
  x: Uint8Array;
  y: Uint8Array;
  skipped: Array<{ line: number; reason: string }>;
  /** File offset the range had been read up to when this batch was complete (progress). */
  at?: number;
  /** Main thread only: hands x and y back for a later batch (SampleBatch.release). */
  release?: () => void;
}

/** What a range reports when finished: its line count (for absolute line numbers) and value-fit statistics. */
export interface RangeEnd {
  lines: number;
  misfit: number;
  firstMisfitLine: number;
  skipped: Array<{ line: number; reason: string }>;
}

/**
 * Parse the lines of one byte range into batches of x (in job.xDtype) and int64 y (runs in a worker or inline).
 * Batch buffers come from `spare` when it holds one of the right size (a worker gets its buffers back that way).
 */
export async function* parseRange(job: RangeJob, spare: ArrayBuffer[] = []): AsyncGenerator<RangeBatch, RangeEnd> {
  const { path, ncols, labelCol, delim, xDtype, batchRows, dataFrom } = job;
  // EOL ends a line; ALT (the other of CR/NL) is a blank like a space: '\r' before '\n', or a stray '\n' in a CR file.
  const EOL = job.eol, ALT = EOL === NL ? CR : NL;
  const nfeat = ncols - 1;
  const xElem = xDtype === 'uint8' ? 1 : xDtype === 'float16' ? 2 : xDtype === 'float32' ? 4 : 8;
  let misfit = 0;
  let firstMisfitLine = 0;
  let xb!: ArrayBuffer, yb!: ArrayBuffer;
  let xU8!: Uint8Array, xU16!: Uint16Array, xF32!: Float32Array, xF64!: Float64Array, yI32!: Int32Array, yU8!: Uint8Array;
  const native = csvAddon();
  const kind = xElem === 1 ? 0 : xElem === 2 ? 1 : xElem === 4 ? 2 : 3;
  const state = new Float64Array(1);
  let n = 0;
  let line = 0;
  const reuse = (bytes: number): ArrayBuffer => {
    const i = spare.findIndex((a) => a.byteLength === bytes);
    return i >= 0 ? spare.splice(i, 1)[0] : new ArrayBuffer(bytes);
  };
  const fresh = () => {
    xb = reuse(batchRows * nfeat * xElem);
    yb = reuse(batchRows * 8);
    xU8 = new Uint8Array(xb);
    xU16 = new Uint16Array(xElem === 2 ? xb : new ArrayBuffer(0));
    xF32 = new Float32Array(xElem === 4 ? xb : new ArrayBuffer(0));
    xF64 = new Float64Array(xElem === 8 ? xb : new ArrayBuffer(0));
    yI32 = new Int32Array(yb);
    yU8 = new Uint8Array(yb);
    n = 0;
  };
  const take = (): RangeBatch => {
    const out = { n, x: new Uint8Array(xb, 0, n * nfeat * xElem), y: new Uint8Array(yb, 0, n * 8), skipped: skips.splice(0) };
    fresh();
    return out;
  };
  fresh();
  const skips: Array<{ line: number; reason: string }> = [];
  const bad = (reason: string) => { skips.push({ line, reason }); };
  // Output position of each column: -1 for the label, else its feature index.
  const dest = new Int32Array(ncols);
  for (let f = 0, k = 0; f < ncols; f++) dest[f] = f === labelCol ? -1 : k++;
  /** Write feature value v to element i of the current batch in the output dtype. */
  const put = (i: number, v: number) => {
    if (xElem === 1) {
      if (v >= 0 && v <= 255 && (v | 0) === v) xU8[i] = v;
      else {
        if (misfit++ === 0) firstMisfitLine = line;
        xU8[i] = Number.isNaN(v) ? 0 : Math.min(255, Math.max(0, Math.round(v)));
      }
    } else if (xElem === 4) xF32[i] = v;
    else if (xElem === 2) {
      if (Math.abs(v) > 65504 && Number.isFinite(v)) { if (misfit++ === 0) firstMisfitLine = line; }
      xU16[i] = floatToHalf(v);
    } else xF64[i] = v;
  };
  /** The skip reason for field f (0-based) starting at b[p] that is not a number. */
  const notANumber = (b: Uint8Array, p: number, e: number, f: number): string => {
    let q = p;
    while (q < e && b[q] !== NL && b[q] !== CR && b[q] !== delim && (delim >= 0 || (b[q] !== SP && b[q] !== TAB))) q++;
    return `field ${f + 1} is not a number: ${JSON.stringify(Buffer.from(b.buffer, b.byteOffset + p, Math.min(q - p, 40)).toString('latin1'))}`;
  };
  /**
   * Parse the complete lines in b[s, e) (e is at a '\n' or the end of the data) in one pass: numbers are written
   * straight into the batch; a line only counts (n++) once it proved complete and well-formed.
   */
  const parseLines = (b: Uint8Array, s: number, e: number): void => {
    let p = s;
    while (p < e) {
      if (native && line + 1 >= dataFrom) {
        // Plain numeric lines in one native call; it stops before any line it leaves to the loop below.
        const rows = native.parse(b, p, e, ncols, labelCol, delim, kind, xU8, yU8, n, batchRows, state, EOL);
        if (rows > 0) {
          line += rows;
          n += rows;
          p = state[0];
          if (n === batchRows) pending.push(take());
          continue;
        }
      }
      line++;
      let c = b[p];
      if (line < dataFrom) { while (p < e && b[p] !== EOL) p++; p++; continue; }
      while (p < e && (c === SP || c === TAB || c === ALT) && c !== delim) c = b[++p];
      if (p >= e || c === EOL || c === HASH) { while (p < e && b[p] !== EOL) p++; p++; continue; } // blank or comment
      const o = n * nfeat;
      let f = 0;
      let label = 0;
      let err: string | null = null;
      for (;;) {
        // At the start of a field, blanks skipped.
        const start = p;
        let v: number;
        if (c >= 48 && c <= 57) {
          v = c - 48;
          c = b[++p];
          while (c >= 48 && c <= 57) { v = v * 10 + (c - 48); c = b[++p]; }
          if (c === 46 || c === 101 || c === 69 || p - start > 15) {
            v = parseNumber(b, start, e);
            // e.g. "17e": digits, then no number after all (scan.pos -1 must never become the read position)
            if (scan.pos < 0) { err = notANumber(b, start, e, f); break; }
            p = scan.pos;
            c = b[p];
          }
        } else {
          v = parseNumber(b, start, e);
          if (scan.pos < 0) { err = notANumber(b, p, e, f); break; }
          p = scan.pos;
          c = b[p];
        }
        if (f < ncols) {
          const d = dest[f];
          if (d < 0) label = v;
          else put(o + d, v);
        }
        f++;
        while (p < e && (c === SP || c === TAB || c === ALT) && c !== delim) c = b[++p];
        if (p >= e || c === EOL) break;
        if (delim >= 0) {
          if (c !== delim) { err = `unexpected character ${JSON.stringify(String.fromCharCode(c))} in field ${f}`; break; }
          c = b[++p];
          while (p < e && (c === SP || c === TAB) && c !== delim) c = b[++p];
          if (p >= e || c === NL || c === CR || c === delim) { err = `field ${f + 1} is empty`; break; }
        }
      }
      while (p < e && b[p] !== EOL) p++;
      p++;
      if (err === null && f !== ncols) err = `expected ${ncols} fields, found ${f}`;
      if (err === null && !Number.isInteger(label)) err = `label ${label} in column ${labelCol} is not a whole number`;
      if (err !== null) { bad(err); continue; }
      yI32[2 * n] = label | 0;
      yI32[2 * n + 1] = Math.floor(label / 4294967296);
      n++;
      if (n === batchRows) pending.push(take());
    }
  };
  const pending: RangeBatch[] = [];
  let carry: Uint8Array | null = null;
  // Two reused 1 MB read buffers: the next chunk is read while this one is parsed.
  const fh = await open(path, 'r');
  let readTo = job.start; // where the next read starts
  let position = job.start; // the end of the chunk being parsed
  const readNext = async (buf: Buffer): Promise<number> => {
    const want = Math.min(buf.length, job.end - readTo);
    if (want <= 0) return 0;
    const { bytesRead } = await fh.read(buf, 0, want, readTo);
    readTo += bytesRead;
    return bytesRead;
  };
  try {
    for await (const chunk of doubleBuffered([Buffer.allocUnsafe(1 << 20), Buffer.allocUnsafe(1 << 20)], readNext)) {
      position += chunk.length;
      const lastNl = chunk.lastIndexOf(EOL);
      if (lastNl < 0) {
        carry = carry ? Buffer.concat([carry, chunk]) : Buffer.from(chunk);
        if (carry.length > 256 << 20) throw new SlimfitError(`line ${line + 1} is longer than 256 MB`, { file: path, hint: 'is this really a text table?' });
        continue;
      }
      let from = 0;
      if (carry) {
        const firstNl = chunk.indexOf(EOL);
        const joined = Buffer.concat([carry, chunk.subarray(0, firstNl)]);
        parseLines(joined, 0, joined.length);
        carry = null;
        from = firstNl + 1;
      }
      parseLines(chunk, from, lastNl);
      if (lastNl + 1 < chunk.length) carry = Buffer.from(chunk.subarray(lastNl + 1));
      while (pending.length > 0) yield { ...pending.shift()!, at: position };
    }
    if (carry && carry.length > 0) parseLines(carry, 0, carry.length);
    while (pending.length > 0) yield { ...pending.shift()!, at: job.end };
    if (n > 0) yield { ...take(), at: job.end };
  } finally {
    await fh.close(); // (doubleBuffered awaited the read in flight)
  }
  return { lines: line, misfit, firstMisfitLine, skipped: skips.splice(0) };
}

/** A batch's release(): puts the buffers of x and y into `pool` for a later batch, once. */
function giveBack(pool: ArrayBuffer[], x: Uint8Array, y: Uint8Array): () => void {
  let done = false;
  return () => { if (!done) { done = true; pool.push(x.buffer as ArrayBuffer, y.buffer as ArrayBuffer); } };
}

/** Parse a range on the calling thread; a released batch's buffers are reused for a later one. */
async function* inlineRange(job: RangeJob): AsyncGenerator<RangeBatch, RangeEnd> {
  const spare: ArrayBuffer[] = [];
  const it = parseRange(job, spare);
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
      yield { ...r.value, release: giveBack(spare, r.value.x, r.value.y) };
    }
  } finally {
    await it.return(undefined as never); // closes the file when the consumer stops early
  }
}

/** Batches a range worker may have in flight before waiting for the consumer (bounds memory). */
const RANGE_CREDITS = 3;

/** Parse a range in a worker thread; batches come back as transferred buffers, with flow control. */
function rangeInWorker(job: RangeJob): AsyncGenerator<RangeBatch, RangeEnd> {
  const w = tsWorker(import.meta.url, { slimfitCsvRange: job }, { maxYoungGenerationSizeMb: 8 });
  type Msg = { type: 'batch'; batch: RangeBatch } | { type: 'end'; end: RangeEnd } | { type: 'error'; message: string; slimfit: boolean };
  const queue: Msg[] = [];
  let wake: (() => void) | null = null;
  let failure: Error | null = null;
  w.on('message', (m: Msg) => { queue.push(m); wake?.(); });
  // Main-thread copies of batches, recycled through SampleBatch.release (a consumer that keeps batches never calls it).
  const pool: ArrayBuffer[] = [];
  const copyInto = (src: Uint8Array): Uint8Array => {
    const full = src.buffer.byteLength;
    const i = pool.findIndex((a) => a.byteLength === full);
    const out = new Uint8Array(i >= 0 ? pool.splice(i, 1)[0] : new ArrayBuffer(full), 0, src.length);
    out.set(src);
    return out;
  };
  w.on('error', (e) => { failure = e; wake?.(); });
  w.on('exit', (code) => { if (code !== 0 && !failure) failure = new Error(`CSV worker exited with code ${code}`); wake?.(); });
  return (async function* () {
    try {
      for (;;) {
        while (queue.length === 0 && !failure) await new Promise<void>((r) => { wake = r; });
        wake = null;
        const m = queue.shift();
        if (!m) throw failure!;
        if (m.type === 'error') throw m.slimfit ? new SlimfitError(m.message) : new Error(m.message);
        if (m.type === 'end') return m.end;
        // Copy out and hand the worker its buffers back: buffers made in one thread and dropped in another pile
        // up as garbage in both (peak RSS kept rising with the input size before this). The copies come from a
        // pool the consumer refills with release(): fresh 4 MB copies per batch piled up as external memory
        // until a full GC, and moved peak RSS by +-7% from run to run.
        const { x, y } = m.batch;
        const xo = copyInto(x), yo = copyInto(y);
        w.postMessage({ x: x.buffer, y: y.buffer }, [x.buffer as ArrayBuffer, y.buffer as ArrayBuffer]);
        yield { ...m.batch, x: xo, y: yo, release: giveBack(pool, xo, yo) };
      }
    } finally {
      await w.terminate();
    }
  })();
}

// Worker side: parse one range and stream its batches back.
if (!isMainThread && parentPort && (workerData as { slimfitCsvRange?: RangeJob } | null)?.slimfitCsvRange) {
  const job = (workerData as { slimfitCsvRange: RangeJob }).slimfitCsvRange;
  const port = parentPort;
  let credits = RANGE_CREDITS;
  let wakeW: (() => void) | null = null;
  const spare: ArrayBuffer[] = [];
  // A credit message returns a consumed batch's buffers.
  port.on('message', (m: { x: ArrayBuffer; y: ArrayBuffer }) => { spare.push(m.x, m.y); credits++; wakeW?.(); });
  (async () => {
    const it = parseRange(job, spare);
    for (;;) {
      const r = await it.next();
      if (r.done) { port.postMessage({ type: 'end', end: r.value }); break; }
      while (credits <= 0) await new Promise<void>((res) => { wakeW = res; });
      wakeW = null;
      credits--;
      const b = r.value;
      port.postMessage({ type: 'batch', batch: b }, [b.x.buffer as ArrayBuffer, b.y.buffer as ArrayBuffer]);
    }
    port.close();
  })().catch((e: Error) => {
    port.postMessage({ type: 'error', message: e.message, slimfit: e instanceof SlimfitError });
  });
}

/** Open a numeric text file as a SampleSource (x: features reshaped to --shape, y: int64 label). */
export async function openCsv(path: string, opts: CsvOptions = {}): Promise<CsvSource> {
  const layout = await readLayout(path, opts);
  const { size: bytes } = await stat(path);
  const nfeat = layout.ncols - 1;
  const shape = opts.shape ?? [nfeat];
  if (shape.some((d) => !Number.isInteger(d) || d < 1) || shape.reduce((a, b) => a * b, 1) !== nfeat) {
    throw new SlimfitError(`--shape ${shape.join(',')} holds ${shape.reduce((a, b) => a * b, 1)} values but each line has ${nfeat} features (plus the label)`, {
      file: path, hint: `use a shape whose product is ${nfeat}, e.g. --shape ${nfeat}`,
    });
  }
  const xDtype = opts.xDtype ?? 'float32';
  if (!CSV_X_DTYPES.includes(xDtype)) throw new SlimfitError(`--x-dtype ${xDtype} is not supported for text input`, { file: path, hint: `use one of ${CSV_X_DTYPES.join(', ')}` });
  const x: FieldSpec = { dtype: xDtype, shape };
  const y: FieldSpec = { dtype: 'int64', shape: [] };
  const xElem = xDtype === 'uint8' ? 1 : xDtype === 'float16' ? 2 : xDtype === 'float32' ? 4 : 8;
  const batchRows = Math.max(1, opts.batchRows ?? Math.max(64, Math.floor((1 << 20) / (nfeat * xElem))));
  const skipped: SkippedInput[] = [];
  const warnings: string[] = [];
  const { ncols, labelCol, delim } = layout;
  let bytesRead = 0;

  /** The first line start at or after byte `at` (a line starts after each line end byte). */
  async function lineStartFrom(fh: Awaited<ReturnType<typeof open>>, at: number, buf: Buffer): Promise<number> {
    if (at <= layout.start) return layout.start;
    let pos = at - 1; // the byte before `at` may be the line end that makes `at` a line start
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) return bytes;
      const i = buf.subarray(0, bytesRead).indexOf(layout.eol);
      if (i >= 0) return Math.min(bytes, pos + i + 1);
      pos += bytesRead;
    }
  }

  /** The bytes [lo, hi) this source reads: the whole text, or its part's lines. */
  const extent = (async (): Promise<[number, number]> => {
    if (!opts.part) return [layout.start, bytes];
    const { index, count } = opts.part;
    const data = bytes - layout.dataStart;
    const cut = async (k: number) => (k === 0 ? layout.start : k >= count ? bytes
      : lineStartFrom(fh, Math.max(layout.dataStart, layout.dataStart + Math.floor((k * data) / count)), buf));
    const fh = await open(path, 'r');
    const buf = Buffer.alloc(1 << 16);
    try {
      return [await cut(index), await cut(index + 1)];
    } finally {
      await fh.close();
    }
  })();
  extent.catch(() => {}); // awaited by every pass

  /** Lines before byte `at` (line numbers of a part are counted from the start of the file). */
  let linesBeforePart: Promise<number> | null = null;
  async function countLines(at: number): Promise<number> {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(1 << 20);
      let n = 0;
      for (let pos = layout.start; pos < at;) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, at - pos), pos);
        if (bytesRead === 0) break;
        for (let i = buf.indexOf(layout.eol, 0); i >= 0 && i < bytesRead; i = buf.indexOf(layout.eol, i + 1)) n++;
        pos += bytesRead;
      }
      return n;
    } finally {
      await fh.close();
    }
  }

  /** Byte ranges that start at line starts: one per parser thread. */
  async function ranges(): Promise<RangeJob[]> {
    const base = { path, ncols, labelCol, delim, eol: layout.eol, xDtype, batchRows };
    const want = Math.max(1, opts.workers ?? 1);
    const [lo, hi] = await extent;
    if (lo >= hi) return [];
    const cuts = [lo];
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(1 << 16);
      for (let k = 1; k < want; k++) {
        const pos = await lineStartFrom(fh, Math.max(cuts[cuts.length - 1], lo + Math.floor((k * (hi - lo)) / want)), buf);
        if (pos < hi && pos > cuts[cuts.length - 1]) cuts.push(pos);
      }
    } finally {
      await fh.close();
    }
    // The header may only be skipped in range 0 of the file, so that range must reach past it.
    return cuts.map((start, k) => ({ ...base, start, end: k + 1 < cuts.length ? cuts[k + 1] : hi, dataFrom: start === layout.start ? layout.firstLine : 1 }));
  }

  /** Every sample once, in order; `onThread` parses on the calling thread whatever opts.workers says. */
  async function* pass(onThread: boolean): AsyncGenerator<SampleBatch> {
    skipped.length = 0;
    warnings.length = 0;
    bytesRead = 0;
    const jobs = await ranges();
    // Small files parse inline: starting a thread costs more than it saves below ~16 MB.
    const inline = onThread || opts.workers === 0 || (opts.workers === undefined && bytes < 16 << 20);
    // Start every range now (workers run ahead, bounded by credits); consume them strictly in order.
    const readers = jobs.map((j) => (inline ? inlineRange(j) : rangeInWorker(j)));
    let lineOffset = 0;
    let misfit = 0;
    let firstMisfitLine = 0;
    const [lo] = await extent;
    /** Lines of the file before this part (counted once, only when a line number is reported). */
    const partBase = () => (lo === layout.start ? Promise.resolve(0) : (linesBeforePart ??= countLines(lo)));
    const report = async (s: Array<{ line: number; reason: string }>) => {
      if (s.length === 0) return;
      const base = await partBase();
      for (const { line: rel, reason } of s) {
        const line = base + rel;
        const abs = lineOffset + line;
        if (opts.strict) {
          throw new SlimfitError(`line ${abs}: ${reason}`, { file: path, hint: '--strict stops at the first malformed line; fix it or drop --strict to skip such lines' });
        }
        skipped.push({ path: `${path}:${abs}`, reason });
      }
    };
    try {
      for (const r of readers) {
        for (;;) {
          const it = await r.next();
          if (it.done) {
            const end = it.value;
            await report(end.skipped);
            if (end.misfit > 0 && misfit === 0) firstMisfitLine = (await partBase()) + lineOffset + end.firstMisfitLine;
            misfit += end.misfit;
            lineOffset += end.lines;
            break;
          }
          await report(it.value.skipped);
          const { n, x, y, release, at } = it.value;
          if (at !== undefined) bytesRead = at;
          if (n > 0) yield { n, x, y, release };
          else release?.();
        }
      }
    } finally {
      await Promise.all(readers.map((r) => r.return(undefined as never)));
    }
    if (misfit > 0) {
      const what = xDtype === 'uint8' ? 'were not whole numbers in 0..255 and were rounded/clamped' : 'were beyond float16 range (+-65504) and became infinite';
      warnings.push(`${path}: ${misfit} value(s) ${what} for --x-dtype ${xDtype} (first on line ${firstMisfitLine}); consider --x-dtype float32`);
    }
  }

  const batches = () => pass(false);

  // The label pass of a stratified split parses on this thread: a second parser thread (isolate and malloc arena)
  // started for it raised a 10x larger CSV's convert peak RSS by up to 1.2x (1x ~130 MB, 10x 141-159 MB).
  async function* labels(): AsyncGenerator<ArrayLike<number>> {
    for await (const b of pass(true)) {
      const v = new Int32Array(b.y.buffer, b.y.byteOffset, b.n * 2);
      const out = new Float64Array(b.n);
      for (let i = 0; i < b.n; i++) out[i] = v[2 * i + 1] * 4294967296 + (v[2 * i] >>> 0);
      b.release?.();
      yield out;
    }
  }

  return {
    name: path,
    x,
    y,
    bytes,
    ...(opts.part ? { part: opts.part } : {}),
    batches,
    labels,
    get skipped() { return skipped; },
    get warnings() { return warnings; },
    get bytesRead() { return bytesRead; },
    close: async () => {},
  };
}
