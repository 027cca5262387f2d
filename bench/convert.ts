// Issue 4 bench (not a test): messy sources vs the obvious Python path, measured in the same run.
//  - an image tree of >= 200k PNGs (MNIST + Fashion-MNIST pixels, and their inverses) in class folders:
//    slimfit (reader alone, and the whole `slimfit convert`) vs a PIL + numpy list loop (/usr/bin/python3);
//  - the same tree as one .tar.gz: `slimfit convert` vs tarfile + PIL streamed front to back;
//  - a >= 1 GB numeric CSV (label + 784 pixels per line): slimfit vs numpy.loadtxt (and pandas.read_csv if importable).
// Peak RSS of every process (GNU time %M, same for all), and slimfit's RSS at 1/10 of the input (flatness).
// Image contenders run in --rounds alternating rounds (PIL in every round); tables give the median and the range.
// Run: node --import tsx bench/convert.ts [--images 210000] [--csv-gb 1.05] [--rounds 3] [--dir /tmp/slimfit-bench-convert]
// Generated data stays in --dir (not in git); it is reused by later runs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { encode } from 'fast-png';
import { BIN, MNIST_DIR, ROOT } from '../dev/helpers.ts';
import { median } from '../dev/median.ts';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '210000' },
    'csv-gb': { type: 'string', default: '1.05' },
    dir: { type: 'string', default: '/tmp/slimfit-bench-convert' },
    python: { type: 'string', default: '/usr/bin/python3' },
    rounds: { type: 'string', default: '3' },
  },
});
const dir = values.dir!;
const PY = values.python!;
mkdirSync(dir, { recursive: true });
const FASHION = '/usr/share/datasets/fashion-mnist';
const DRAIN = join(ROOT, 'test', 'drain-source.mjs');

/** 28x28 images and labels from an IDX pair (plain or .gz). */
function idx(images: string, labels: string): { n: number; px: Buffer; y: Buffer } {
  const rd = (p: string) => (p.endsWith('.gz') ? gunzipSync(readFileSync(p)) : readFileSync(p));
  const px = rd(images);
  const y = rd(labels);
  return { n: px.readUInt32BE(4), px: px.subarray(16), y: y.subarray(8) };
}

function sources(): Array<{ name: string; n: number; px: Buffer; y: Buffer }> {
  const out = [
    { name: 'd', ...idx(join(MNIST_DIR, 'train-images-idx3-ubyte'), join(MNIST_DIR, 'train-labels-idx1-ubyte')) },
    { name: 'd', ...idx(join(MNIST_DIR, 't10k-images-idx3-ubyte'), join(MNIST_DIR, 't10k-labels-idx1-ubyte')) },
  ];
  if (existsSync(join(FASHION, 'train-images-idx3-ubyte.gz'))) {
    out.push({ name: 'f', ...idx(join(FASHION, 'train-images-idx3-ubyte.gz'), join(FASHION, 'train-labels-idx1-ubyte.gz')) });
    out.push({ name: 'f', ...idx(join(FASHION, 't10k-images-idx3-ubyte.gz'), join(FASHION, 't10k-labels-idx1-ubyte.gz')) });
  } else {
    console.error('dataset-fashion-mnist not installed: using MNIST only (inverted copies fill up the count)');
  }
  return out;
}

/** Write `count` PNGs into root/<class>/<i>.png: every source image, then inverted copies (255 - x) as needed. */
function makeTree(root: string, count: number): void {
  if (existsSync(join(root, '.complete')) && readFileSync(join(root, '.complete'), 'utf8') === String(count)) return;
  rmSync(root, { recursive: true, force: true });
  const srcs = sources();
  let i = 0;
  const made = new Set<string>();
  for (let pass = 0; i < count; pass++) {
    for (const s of srcs) {
      for (let k = 0; k < s.n && i < count; k++, i++) {
        const cls = `${s.name}${s.y[k]}`;
        const d = join(root, cls);
        if (!made.has(cls)) { mkdirSync(d, { recursive: true }); made.add(cls); }
        let px = s.px.subarray(k * 784, (k + 1) * 784);
        if (pass % 2 === 1) px = Buffer.from(px.map((v) => 255 - v));
        writeFileSync(join(d, `${String(i).padStart(7, '0')}.png`), encode({ width: 28, height: 28, data: px, channels: 1, depth: 8 }));
      }
    }
  }
  writeFileSync(join(root, '.complete'), String(count));
}

/** Write a CSV (no header) of label,784 pixels per line, cycling through the sources, until `bytes` is reached. */
function makeCsv(path: string, bytes: number): void {
  if (existsSync(path) && statSync(path).size >= bytes) return;
  const srcs = sources();
  const fd = openSync(path, 'w');
  let written = 0;
  outer: for (;;) {
    for (const s of srcs) {
      for (let k = 0; k < s.n; k += 1000) {
        let chunk = '';
        for (let j = k; j < Math.min(s.n, k + 1000); j++) {
          chunk += s.y[j] + ',' + Array.prototype.join.call(s.px.subarray(j * 784, (j + 1) * 784), ',') + '\n';
        }
        writeSync(fd, chunk);
        written += Buffer.byteLength(chunk);
        if (written >= bytes) break outer;
      }
    }
  }
  closeSync(fd);
}

/** Run under GNU time: wall seconds, peak RSS (bytes), stdout. */
function timed(cmd: string, args: string[]): { s: number; rss: number; out: string } {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'gnu-time-maxrss-kb=%M', cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-3000)}`);
  const m = /gnu-time-maxrss-kb=(\d+)/.exec(r.stderr);
  return { s, rss: m ? Number(m[1]) * 1024 : NaN, out: r.stdout };
}

function pyAvailable(mod: string): boolean {
  return spawnSync(PY, ['-c', `import ${mod}`]).status === 0;
}

const PIL_LOOP = `
import os, sys, numpy as np
from PIL import Image
root = sys.argv[1]
xs, ys = [], []
for ci, c in enumerate(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))):
    for f in sorted(os.listdir(os.path.join(root, c))):
        xs.append(np.asarray(Image.open(os.path.join(root, c, f))))
        ys.append(ci)
X = np.stack(xs); y = np.array(ys)
print(X.shape, int(X.sum() % 1000000007))
`;
// The obvious Python path for a .tar.gz of class folders: tarfile streamed front to back, PIL per member.
const PIL_TAR = `
import io, sys, tarfile, numpy as np
from PIL import Image
xs, cls = [], []
with tarfile.open(sys.argv[1], 'r:gz') as tf:
    for m in tf:
        if m.isfile() and m.name.endswith('.png'):
            xs.append(np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read()))))
            cls.append(m.name.split('/')[-2])
names = sorted(set(cls)); index = {c: i for i, c in enumerate(names)}
X = np.stack(xs); y = np.array([index[c] for c in cls])
print(X.shape, int(X.sum() % 1000000007))
`;

const LOADTXT = `
import sys, numpy as np
a = np.loadtxt(sys.argv[1], delimiter=',')
print(a.shape)
`;
const PANDAS = `
import sys, pandas as pd
a = pd.read_csv(sys.argv[1], header=None).to_numpy()
print(a.shape)
`;

const mb = (b: number) => (b / 1e6).toFixed(0);
const loadBefore = loadavg()[0];
const lines: string[] = [];
const say = (s: string) => { console.log(s); lines.push(s); };

// ---------------- images ----------------
const nImages = Number(values.images);
const tree = join(dir, `tree-${nImages}`);
const tenth = join(dir, `tree-${Math.round(nImages / 10)}`);
console.error(`generating ${nImages} PNGs in ${tree} (reused when present)...`);
makeTree(tree, nImages);
makeTree(tenth, Math.round(nImages / 10));
// The same warm cache for every contender: re-read the files just before each run (this machine's page cache
// drops pages within a minute even with free memory, so one warm-up at the start is not enough).
const warmTree = (t: string) => spawnSync('sh', ['-c', `find ${t} -type f -print0 | xargs -0 cat > /dev/null`]);
const store = join(dir, 'store');
const workers2 = '{"workers":2}';
const hasPil = pyAvailable('PIL');
type Run = { s: number; rss: number; out: string };
/** One contender: a fresh warm cache, a clean output folder, then the timed process. */
const once = (t: string, cmd: string, args: string[]): Run => {
  rmSync(store, { recursive: true, force: true });
  warmTree(t);
  const r = timed(cmd, args);
  rmSync(store, { recursive: true, force: true });
  return r;
};
const contenders: Record<string, () => Run> = {
  reader: () => once(tree, process.execPath, [DRAIN, tree, '{}']),
  reader2: () => once(tree, process.execPath, [DRAIN, tree, workers2]),
  conv: () => once(tree, process.execPath, [BIN, 'convert', tree, store, '-q', '--force']),
  conv2: () => once(tree, process.execPath, [BIN, 'convert', tree, store, '-q', '--force', '--workers', '2']),
  ...(hasPil ? { pil: () => once(tree, PY, ['-c', PIL_LOOP, tree]) } : {}),
  // Flatness: the same commands on a tenth of the tree (and, for the reader, the same work as 10 passes over it:
  // peak RSS also grows with run length, as V8's heap sizing and malloc warm up over seconds, whatever the data).
  reader10: () => once(tenth, process.execPath, [DRAIN, tenth, '{}']),
  reader10x10: () => once(tenth, process.execPath, [DRAIN, tenth, '{}', '10']),
  conv10: () => once(tenth, process.execPath, [BIN, 'convert', tenth, store, '-q', '--force']),
  // Without fingerprints: the duplicate index (~9-22 bytes per distinct sample) out of the picture.
  convNd: () => once(tree, process.execPath, [BIN, 'convert', tree, store, '-q', '--force', '--no-dup-check']),
  convNd10: () => once(tenth, process.execPath, [BIN, 'convert', tenth, store, '-q', '--force', '--no-dup-check']),
};
const rounds = Math.max(1, Number(values.rounds));
const runs: Record<string, Run[]> = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
for (let r = 0; r < rounds; r++) {
  console.error(`image round ${r + 1} of ${rounds}...`);
  for (const [k, run] of Object.entries(contenders)) runs[k].push(run());
}
const sec = (k: string) => median(runs[k].map((r) => r.s));
const rss = (k: string) => median(runs[k].map((r) => r.rss));
const range = (k: string) => { const v = runs[k].map((r) => r.s); return `${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)}`; };
/** Speed vs PIL: ratio of medians, and the lowest/highest of the per-round ratios (PIL measured in the same round). */
const vs = (k: string) => {
  if (!hasPil) return 'n/a';
  const per = runs[k].map((r, i) => runs.pil[i].s / r.s);
  return `**${(sec('pil') / sec(k)).toFixed(2)}x** (${Math.min(...per).toFixed(2)}-${Math.max(...per).toFixed(2)})`;
};

say(`## Image tree: ${nImages} PNGs (28x28 gray, MNIST + Fashion-MNIST pixels), ${Math.round(nImages / 1000)}k files in class folders`);
say('');
say(`Median of ${rounds} alternating round(s); seconds range and per-round speed ratio range in brackets.`);
say('');
say('| reader | images/s | seconds (range) | peak RSS MB | speed vs PIL loop (range) |');
say('|---|---|---|---|---|');
const ips = (k: string) => (nImages / sec(k)).toFixed(0);
const row = (label: string, k: string) => say(`| ${label} | ${ips(k)} | ${sec(k).toFixed(2)} (${range(k)}) | ${mb(rss(k))} | ${k === 'pil' ? '1.00x' : vs(k)} |`);
row(`slimfit reader (openMessySource → batches, decode pool, default cores - 1 = ${Math.max(1, availableParallelism() - 1)} worker(s))`, 'reader');
row('slimfit reader, 2 decode workers', 'reader2');
row('slimfit convert (reader + fingerprints + stats + shards + SHA-256 + fsync), default workers', 'conv');
row('slimfit convert --workers 2', 'conv2');
if (hasPil) row(`Python: PIL + numpy list loop, np.stack (${PY})`, 'pil');
else say('| PIL loop | PIL not importable | | | |');
say('');
const flat = (what: string, k10: string, k: string, note = '') =>
  say(`- ${what}: ${mb(rss(k10))} MB vs ${mb(rss(k))} MB, ratio **${(rss(k) / rss(k10)).toFixed(3)}**${note} (per round: ${runs[k].map((r, i) => (r.rss / runs[k10][i].rss).toFixed(3)).join(', ')}).`);
say(`Peak RSS (median), ${Math.round(nImages / 10)} vs ${nImages} images:`);
flat('slimfit convert', 'conv10', 'conv', '; includes the duplicate index');
flat('slimfit convert --no-dup-check', 'convNd10', 'convNd');
flat('slimfit reader', 'reader10', 'reader');
flat(`slimfit reader, same work (10 passes over ${Math.round(nImages / 10)})`, 'reader10x10', 'reader');
say('');

// ---------------- the same tree as a .tar.gz ----------------
const tgz = join(dir, `tree-${nImages}.tar.gz`);
const tgz10 = join(dir, `tree-${Math.round(nImages / 10)}.tar.gz`);
for (const [t, out] of [[tree, tgz], [tenth, tgz10]]) {
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(join(t, '.complete')).mtimeMs) {
    console.error(`packing ${out}...`);
    const r = spawnSync('tar', ['czf', `${out}.tmp`, '-C', dir, t.slice(dir.length + 1)]);
    if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
    renameSync(`${out}.tmp`, out);
  }
}
const onceFile = (f: string, cmd: string, args: string[]): Run => {
  rmSync(store, { recursive: true, force: true });
  spawnSync('sh', ['-c', `cat ${f} > /dev/null`]);
  const r = timed(cmd, args);
  rmSync(store, { recursive: true, force: true });
  return r;
};
const tarContenders: Record<string, () => Run> = {
  tconv: () => onceFile(tgz, process.execPath, [BIN, 'convert', tgz, store, '-q', '--force']),
  ...(hasPil ? { tpil: () => onceFile(tgz, PY, ['-c', PIL_TAR, tgz]) } : {}),
  tconv10: () => onceFile(tgz10, process.execPath, [BIN, 'convert', tgz10, store, '-q', '--force']),
};
for (const k of Object.keys(tarContenders)) runs[k] = [];
for (let r = 0; r < rounds; r++) {
  console.error(`tar.gz round ${r + 1} of ${rounds}...`);
  for (const [k, run] of Object.entries(tarContenders)) runs[k].push(run());
}
say(`## The same ${nImages} PNGs as one .tar.gz (${mb(statSync(tgz).size)} MB), read as a stream`);
say('');
say('| reader | images/s | seconds (range) | peak RSS MB | speed vs tarfile + PIL (range) |');
say('|---|---|---|---|---|');
const vsTar = (k: string) => {
  if (!hasPil) return 'n/a';
  const per = runs[k].map((r, i) => runs.tpil[i].s / r.s);
  return `**${(sec('tpil') / sec(k)).toFixed(2)}x** (${Math.min(...per).toFixed(2)}-${Math.max(...per).toFixed(2)})`;
};
say(`| slimfit convert (a first pass over the headers for the class names, then decode) | ${ips('tconv')} | ${sec('tconv').toFixed(2)} (${range('tconv')}) | ${mb(rss('tconv'))} | ${vsTar('tconv')} |`);
if (hasPil) say(`| Python: tarfile + PIL + numpy list loop (${PY}) | ${ips('tpil')} | ${sec('tpil').toFixed(2)} (${range('tpil')}) | ${mb(rss('tpil'))} | 1.00x |`);
say('');
say(`Peak RSS (median), ${Math.round(nImages / 10)} vs ${nImages} images:`);
flat('slimfit convert of the .tar.gz', 'tconv10', 'tconv', '; includes the duplicate index');
say('');

// ---------------- CSV ----------------
const csvBytes = Number(values['csv-gb']) * 1e9;
const csv = join(dir, 'big.csv');
const csv10 = join(dir, 'tenth.csv');
console.error(`generating a ${(csvBytes / 1e9).toFixed(2)} GB CSV (reused when present)...`);
makeCsv(csv, csvBytes);
makeCsv(csv10, csvBytes / 10);
const size = statSync(csv).size;
const warmFile = (f: string) => spawnSync('sh', ['-c', `cat ${f} > /dev/null`]);
warmFile(csv);
const rCsv = timed(process.execPath, [DRAIN, csv, '{"xDtype":"uint8"}']);
warmFile(csv10);
const rCsv10 = timed(process.execPath, [DRAIN, csv10, '{"xDtype":"uint8"}']);
rmSync(store, { recursive: true, force: true });
warmFile(csv);
const convCsv = (f: string) => { rmSync(store, { recursive: true, force: true }); warmFile(f); const r = timed(process.execPath, [BIN, 'convert', f, store, '-q', '--force', '--x-dtype', 'uint8', '--shape', '28,28']); rmSync(store, { recursive: true, force: true }); return r; };
const rCsvConv = convCsv(csv);
const rCsvConv10 = convCsv(csv10);
const rowsCsv = Number(/samples=(\d+)/.exec(rCsv.out)?.[1]);
warmFile(csv);
const rLoad = timed(PY, ['-c', LOADTXT, csv]);
const hasPandas = pyAvailable('pandas');
if (hasPandas) warmFile(csv);
const rPandas = hasPandas ? timed(PY, ['-c', PANDAS, csv]) : null;

say(`## CSV: ${(size / 1e9).toFixed(2)} GB, ${rowsCsv} lines of label + 784 pixels`);
say('');
say('| reader | MB/s | seconds | peak RSS MB | speed vs numpy.loadtxt |');
say('|---|---|---|---|---|');
const mbs = (s: number) => (size / 1e6 / s).toFixed(0);
say(`| slimfit reader (hand-written streaming parser, uint8) | ${mbs(rCsv.s)} | ${rCsv.s.toFixed(1)} | ${mb(rCsv.rss)} | ${(rLoad.s / rCsv.s).toFixed(2)}x |`);
say(`| slimfit convert --x-dtype uint8 --shape 28,28 | ${mbs(rCsvConv.s)} | ${rCsvConv.s.toFixed(1)} | ${mb(rCsvConv.rss)} | ${(rLoad.s / rCsvConv.s).toFixed(2)}x |`);
say(`| numpy.loadtxt(delimiter=',') (${PY}) | ${mbs(rLoad.s)} | ${rLoad.s.toFixed(1)} | ${mb(rLoad.rss)} | 1.00x |`);
say(rPandas ? `| pandas.read_csv(header=None) | ${mbs(rPandas.s)} | ${rPandas.s.toFixed(1)} | ${mb(rPandas.rss)} | ${(rLoad.s / rPandas.s).toFixed(2)}x |` : '| pandas.read_csv | not importable here | | | |');
say('');
say(`slimfit reader peak RSS at ${(statSync(csv10).size / 1e9).toFixed(2)} GB: ${mb(rCsv10.rss)} MB; at ${(size / 1e9).toFixed(2)} GB: ${mb(rCsv.rss)} MB (ratio ${(rCsv.rss / rCsv10.rss).toFixed(3)}).`);
say(`slimfit convert peak RSS at ${(statSync(csv10).size / 1e9).toFixed(2)} GB: ${mb(rCsvConv10.rss)} MB; at ${(size / 1e9).toFixed(2)} GB: ${mb(rCsvConv.rss)} MB (ratio ${(rCsvConv.rss / rCsvConv10.rss).toFixed(3)}; includes the duplicate index).`);
say('');
say(`Machine: ${spawnSync('nproc').stdout.toString().trim()} cores, 1-minute load average ${loadBefore.toFixed(1)} before and ${loadavg()[0].toFixed(1)} after (shared machine); page cache warm for every reader; times include process start.`);
writeFileSync(join(dir, 'bench-convert.md'), lines.join('\n') + '\n');
console.error(`table written to ${join(dir, 'bench-convert.md')}`);
