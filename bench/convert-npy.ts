// Issue 2 bench: `slimfit convert` throughput and peak RSS on MNIST and a >= 2 GB synthetic .npy pair, next to `cp` of the same bytes.
// Run: node --import tsx bench/convert-npy.ts [--gb 2.2] [--dir /tmp/slimfit-bench]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BIN, MNIST_DIR } from '../dev/helpers.ts';

const { values } = parseArgs({ options: { gb: { type: 'string', default: '2.2' }, dir: { type: 'string', default: '/tmp/slimfit-bench' } } });
const dir = values.dir!;
mkdirSync(dir, { recursive: true });

/** Run a command, returning wall seconds and the peak RSS it reports via SLIMFIT_REPORT_RSS. */
function timed(cmd: string, args: string[], env: Record<string, string> = {}): { s: number; rss: number } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 26 });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stderr}`);
  const m = /slimfit-peak-rss-bytes=(\d+)/.exec(r.stderr);
  return { s, rss: m ? Number(m[1]) : NaN };
}

/** `cp` of the same files, then `sync` (slimfit fsyncs its shards), with peak RSS from GNU time when present. */
function cpRun(files: string[], to: string): { s: number; sSync: number; rss: number } {
  mkdirSync(to, { recursive: true });
  const hasTime = existsSync('/usr/bin/time');
  const t0 = performance.now();
  const r = hasTime
    ? spawnSync('/usr/bin/time', ['-f', '%M', 'cp', ...files, to], { encoding: 'utf8' })
    : spawnSync('cp', [...files, to], { encoding: 'utf8' });
  const s = (performance.now() - t0) / 1000;
  execFileSync('sync');
  const sSync = (performance.now() - t0) / 1000;
  const rss = hasTime ? Number(r.stderr.trim().split('\n').pop()) * 1024 : NaN;
  return { s, sSync, rss };
}

const rows: string[][] = [];
function bench(label: string, inputs: string[], convertArgs: string[]): void {
  const bytes = inputs.reduce((a, f) => a + statSync(f).size, 0);
  execFileSync('cat', inputs, { stdio: ['ignore', 'ignore', 'inherit'] }); // same warm page cache for both
  execFileSync('sync');
  const out = join(dir, 'store');
  rmSync(out, { recursive: true, force: true });
  const conv = timed(process.execPath, [BIN, 'convert', ...convertArgs, out, '-q', '--force'], { SLIMFIT_REPORT_RSS: '1' });
  const cpDir = join(dir, 'cp');
  rmSync(cpDir, { recursive: true, force: true });
  const cp = cpRun(inputs, cpDir);
  rmSync(cpDir, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  const mbs = (s: number) => (bytes / 1e6 / s).toFixed(0);
  rows.push([label, (bytes / 1e9).toFixed(2), mbs(conv.s), mbs(cp.s), mbs(cp.sSync), (cp.sSync / conv.s).toFixed(2), (conv.rss / 1e6).toFixed(0), (cp.rss / 1e6).toFixed(1)]);
}

bench('MNIST IDX (train+test)', ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'].map((f) => join(MNIST_DIR, f)), [MNIST_DIR]);

const n = Math.ceil((Number(values.gb) * 1e9) / 3136);
const x = join(dir, 'x.npy'), y = join(dir, 'y.npy');
if (!existsSync(x) || statSync(x).size < n * 3136) {
  execFileSync('python3', ['-c', `
import sys, numpy as np
from numpy.lib.format import open_memmap
n = int(sys.argv[3]); x = open_memmap(sys.argv[1], mode='w+', dtype=np.float32, shape=(n, 28, 28))
for i in range(0, n, 50000):
    x[i:i + 50000] = np.random.default_rng(i).random((min(50000, n - i), 28, 28), dtype=np.float32)
x.flush(); np.save(sys.argv[2], (np.arange(n) % 10).astype(np.uint8))`, x, y, String(n)]);
}
bench(`synthetic float32 .npy pair (${n} x 28x28)`, [x, y], ['--x', x, '--y', y, '--split', 'train=0.9,test=0.1']);

console.log('| input | GB | slimfit convert MB/s | cp MB/s | cp+sync MB/s | convert speed / (cp+sync) | convert peak RSS MB | cp peak RSS MB |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log('\nconvert = read, stratified split, fingerprint every sample (duplicates), per-channel stats, write shards, fsync, SHA-256 of every shard.');
