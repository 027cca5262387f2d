// Issue 4 bench (not a test): messy sources vs the obvious Python path, measured in the same run.
//  - an image tree of >= 200k PNGs (MNIST + Fashion-MNIST pixels, and their inverses) in class folders:
//    slimfit (reader alone, and the whole `slimfit convert`) vs a PIL + numpy list loop (/usr/bin/python3);
//  - a >= 1 GB numeric CSV (label + 784 pixels per line): slimfit vs numpy.loadtxt (and pandas.read_csv if importable).
// Peak RSS of every process (GNU time %M, same for all), and slimfit's RSS at 1/10 of the input (flatness).
// Run: node --import tsx bench/convert.ts [--images 210000] [--csv-gb 1.05] [--dir /tmp/slimfit-bench-convert]
// Generated data stays in --dir (not in git); it is reused by later runs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { encode } from 'fast-png';
import { BIN, MNIST_DIR, ROOT } from '../test/helpers.ts';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '210000' },
    'csv-gb': { type: 'string', default: '1.05' },
    dir: { type: 'string', default: '/tmp/slimfit-bench-convert' },
    python: { type: 'string', default: '/usr/bin/python3' },
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
warmTree(tree);
const rImg = timed(process.execPath, [DRAIN, tree, '{}']);
warmTree(tree);
const rImg2 = timed(process.execPath, [DRAIN, tree, workers2]);
warmTree(tenth);
const rImg10 = timed(process.execPath, [DRAIN, tenth, '{}']);
// The same work as one pass over the big tree: 10 passes over the tenth (peak RSS also grows with run length: V8's
// heap sizing and malloc warm up over seconds, whatever the data).
warmTree(tenth);
const rImg10x10 = timed(process.execPath, [DRAIN, tenth, '{}', '10']);
rmSync(store, { recursive: true, force: true });
warmTree(tree);
const rConv = timed(process.execPath, [BIN, 'convert', tree, store, '-q', '--force']);
rmSync(store, { recursive: true, force: true });
warmTree(tenth);
const rConv10 = timed(process.execPath, [BIN, 'convert', tenth, store, '-q', '--force']);
// Without fingerprints: the duplicate index (~9 bytes per slot, both tables alive while it doubles) out of the picture.
rmSync(store, { recursive: true, force: true });
warmTree(tree);
const rConvNd = timed(process.execPath, [BIN, 'convert', tree, store, '-q', '--force', '--no-dup-check']);
rmSync(store, { recursive: true, force: true });
warmTree(tenth);
const rConvNd10 = timed(process.execPath, [BIN, 'convert', tenth, store, '-q', '--force', '--no-dup-check']);
rmSync(store, { recursive: true, force: true });
warmTree(tree);
const rConv2 = timed(process.execPath, [BIN, 'convert', tree, store, '-q', '--force', '--workers', '2']);
rmSync(store, { recursive: true, force: true });
const hasPil = pyAvailable('PIL');
warmTree(tree);
const rPil = hasPil ? timed(PY, ['-c', PIL_LOOP, tree]) : null;

say(`## Image tree: ${nImages} PNGs (28x28 gray, MNIST + Fashion-MNIST pixels), ${Math.round(nImages / 1000)}k files in class folders`);
say('');
say('| reader | images/s | seconds | peak RSS MB | speed vs PIL loop |');
say('|---|---|---|---|---|');
const ips = (s: number) => (nImages / s).toFixed(0);
const vs = (s: number) => (rPil ? (rPil.s / s).toFixed(2) + 'x' : 'n/a');
say(`| slimfit reader (openMessySource → batches, decode pool, default cores - 1 = ${Math.max(1, availableParallelism() - 1)} worker(s)) | ${ips(rImg.s)} | ${rImg.s.toFixed(1)} | ${mb(rImg.rss)} | ${vs(rImg.s)} |`);
say(`| slimfit reader, 2 decode workers | ${ips(rImg2.s)} | ${rImg2.s.toFixed(1)} | ${mb(rImg2.rss)} | ${vs(rImg2.s)} |`);
say(`| slimfit convert (reader + fingerprints + stats + shards + SHA-256 + fsync), default workers | ${ips(rConv.s)} | ${rConv.s.toFixed(1)} | ${mb(rConv.rss)} | ${vs(rConv.s)} |`);
say(`| slimfit convert --workers 2 | ${ips(rConv2.s)} | ${rConv2.s.toFixed(1)} | ${mb(rConv2.rss)} | ${vs(rConv2.s)} |`);
say(rPil ? `| Python: PIL + numpy list loop, np.stack (${PY}) | ${ips(rPil.s)} | ${rPil.s.toFixed(1)} | ${mb(rPil.rss)} | 1.00x |` : '| PIL loop | PIL not importable | | | |');
say('');
say(`slimfit reader peak RSS at ${Math.round(nImages / 10)} images: ${mb(rImg10.rss)} MB; at ${nImages}: ${mb(rImg.rss)} MB (ratio ${(rImg.rss / rImg10.rss).toFixed(3)}).`);
say(`slimfit reader peak RSS for the same work (10 passes over the ${Math.round(nImages / 10)} images vs one over ${nImages}): ${mb(rImg10x10.rss)} MB vs ${mb(rImg.rss)} MB (ratio ${(rImg.rss / rImg10x10.rss).toFixed(3)}).`);
say(`slimfit convert peak RSS at ${Math.round(nImages / 10)} images: ${mb(rConv10.rss)} MB; at ${nImages}: ${mb(rConv.rss)} MB (ratio ${(rConv.rss / rConv10.rss).toFixed(3)}; includes the duplicate index, ~9-22 bytes per distinct sample).`);
say(`slimfit convert --no-dup-check peak RSS at ${Math.round(nImages / 10)} images: ${mb(rConvNd10.rss)} MB; at ${nImages}: ${mb(rConvNd.rss)} MB (ratio ${(rConvNd.rss / rConvNd10.rss).toFixed(3)}).`);
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
const rCsvConv = timed(process.execPath, [BIN, 'convert', csv, store, '-q', '--force', '--x-dtype', 'uint8', '--shape', '28,28']);
rmSync(store, { recursive: true, force: true });
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
say('');
say(`Machine: ${spawnSync('nproc').stdout.toString().trim()} cores, 1-minute load average ${loadBefore.toFixed(1)} before and ${loadavg()[0].toFixed(1)} after (shared machine); page cache warm for every reader; times include process start.`);
writeFileSync(join(dir, 'bench-convert.md'), lines.join('\n') + '\n');
console.error(`table written to ${join(dir, 'bench-convert.md')}`);
