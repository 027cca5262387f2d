// Fuzzing every input format: a small valid fixture per format, seeded random byte flips, truncations, insertions
// and overwrites, each run through the library path of `slimfit convert` (the store's own files through info,
// verify and a loader batch) by dev/fuzz-driver.ts, many cases per child process. Every case must end in a valid
// store or a SlimfitError; any other exception, a hang (no result within CASE_TIMEOUT_MS) or a driver above
// 500 MB peak RSS fails the test. Counts per format are printed (ok / clear error / fail).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import h5wasm from 'h5wasm/node';
import { encode } from 'fast-png';
import { ROOT, py, runCli, tempDir, disableAlso } from '../dev/helpers.ts';
import type { FuzzJob } from '../dev/fuzz-driver.ts';
import { featureEnabled } from '../src/core/config.ts';

const DRIVER = join(ROOT, 'dev', 'fuzz-driver.ts');
/** One mutated input must finish within this (generous: 2 cores shared; a valid fixture converts in ~50 ms). */
const CASE_TIMEOUT_MS = 30_000;
const MAX_RSS = 500e6;
/** Seed of the whole suite (no environment variable sets it: src/core/config.ts owns those): change it here to explore. */
const SEED = 20261206;
/**
 * SLIMFIT_DISABLE=native (CI's second pass) fuzzes the fallback readers again, decoding images and loading batches on
 * the calling thread (a worker thread started through tsx costs ~0.3 s per case); the JavaScript decode worker pool is
 * fuzzed in the first pass with SLIMFIT_DISABLE=png-pool. The HDF5 readers (h5wasm in both passes) and the
 * native-vs-JS CSV comparison are left to the first pass.
 */
const FALLBACK = !featureEnabled('native');
const BOTH_PASSES_SAME = 'h5wasm reads HDF5 in both passes: fuzzed in the pass with the native addons';

interface Tally { ok: number; clear: number; fail: number; failures: string[]; peakRss: number; /** per case: store digest or error text */ results: Map<number, string>; /** the case that raised peak RSS most */ rssJump: { case: number; bytes: number; message: string } }

/** Run `cases` mutations of one fixture through the driver, restarting it after a hang or crash. */
async function fuzz(job: Omit<FuzzJob, 'first' | 'cases' | 'work'>, cases: number, work: string, env: Record<string, string> = {}): Promise<Tally> {
  const tally: Tally = { ok: 0, clear: 0, fail: 0, failures: [], peakRss: 0, results: new Map(), rssJump: { case: -1, bytes: 0, message: '' } };
  let first = 0;
  while (first < cases) {
    const jobFile = join(work, 'job.json');
    writeFileSync(jobFile, JSON.stringify({ ...job, first, cases: cases - first, work: join(work, 'w') } satisfies FuzzJob));
    const done = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', DRIVER, jobFile], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      let buf = '';
      let stderr = '';
      let current = first - 1;
      let peakBefore = 0;
      let finished = false;
      let timer: NodeJS.Timeout | undefined;
      const arm = () => { clearTimeout(timer); timer = setTimeout(() => { tally.fail++; tally.failures.push(`case ${current}: hang (no result in ${CASE_TIMEOUT_MS} ms)`); child.kill('SIGKILL'); }, CASE_TIMEOUT_MS); };
      child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
      child.stdout.on('data', (d) => {
        buf += d;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
          const m = JSON.parse(line) as { case?: number; start?: boolean; outcome?: 'ok' | 'clear' | 'fail'; message?: string; target?: string; peakRss?: number; result?: string; peakSoFar?: number };
          if (m.peakRss !== undefined) { tally.peakRss = Math.max(tally.peakRss, m.peakRss); finished = true; continue; }
          if (m.start) { current = m.case!; arm(); continue; }
          clearTimeout(timer);
          tally[m.outcome!]++;
          tally.results.set(m.case!, `${m.outcome}: ${m.result}`);
          const jump = (m.peakSoFar ?? 0) - peakBefore;
          if (peakBefore > 0 && jump > tally.rssJump.bytes) tally.rssJump = { case: m.case!, bytes: jump, message: `${m.target}: ${m.message?.slice(0, 300)}` };
          peakBefore = m.peakSoFar ?? peakBefore;
          if (m.outcome === 'fail') tally.failures.push(`case ${m.case} (${m.target}): ${m.message}`);
        }
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (!finished && !tally.failures.some((f) => f.startsWith(`case ${current}:`))) {
          tally.fail++;
          tally.failures.push(`case ${current}: driver exited (code ${code}) without a result: ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
        }
        resolve(finished ? cases : current + 1);
      });
    });
    first = done;
  }
  return tally;
}

describe('fuzz: mutated inputs end in a valid store or a clear error', { concurrency: false }, () => {
  const tmp = tempDir('slimfit-fuzz-');
  const fx = (p: string) => join(tmp.dir, 'fixtures', p);
  const totals: Record<string, Tally> = {};

  before(async () => {
    mkdirSync(fx(''), { recursive: true });
    // numpy, scipy and python's archive modules write the reference files.
    py(`
import io, os, sys, tarfile, zipfile
import numpy as np, scipy.io
d = sys.argv[1]
rng = np.random.default_rng(7)
x = rng.integers(0, 255, size=(12, 4, 3), dtype=np.uint8); y = (np.arange(12) % 3).astype(np.int64)
os.makedirs(d + '/npy'); np.save(d + '/npy/x.npy', x.astype(np.float32)); np.save(d + '/npy/y.npy', y)
np.savez(d + '/plain.npz', x=x, y=y)
np.savez_compressed(d + '/deflated.npz', x=x.astype(np.float32), y=y)
scipy.io.savemat(d + '/plain.mat', {'X': x.reshape(12, 12).astype(np.float64), 'y': y.reshape(12, 1).astype(np.float64)})
scipy.io.savemat(d + '/zipped.mat', {'X': x.reshape(12, 12), 'y': y.reshape(1, 12).astype(np.uint8)}, do_compression=True)
os.makedirs(d + '/idx')
open(d + '/idx/x.idx', 'wb').write(bytes([0, 0, 8, 3]) + (12).to_bytes(4, 'big') + (4).to_bytes(4, 'big') + (3).to_bytes(4, 'big') + x.tobytes())
open(d + '/idx/y.idx', 'wb').write(bytes([0, 0, 8, 1]) + (12).to_bytes(4, 'big') + y.astype(np.uint8).tobytes())
import gzip
os.makedirs(d + '/idxgz')
for n in ['x', 'y']: open(d + '/idxgz/' + n + '.idx.gz', 'wb').write(gzip.compress(open(d + '/idx/' + n + '.idx', 'rb').read()))
with open(d + '/data.csv', 'w') as f:
    f.write('label,a,b,c,d\\n')
    for i in range(12): f.write(','.join([str(int(y[i]))] + [str(v) for v in x[i, 0]] + [str(x[i, 1, 0] / 7)]) + '\\n')
open(d + '/data-cr.csv', 'w', newline='').write(open(d + '/data.csv').read().replace('\\n', '\\r'))
`, [fx('')]);
    // A PNG tree of 3 classes x 3 images of 5x4 gray pixels, and the same as .tar.gz and .zip.
    for (const cls of ['a', 'b', 'c']) {
      mkdirSync(fx(`tree/${cls}`), { recursive: true });
      for (let i = 0; i < 3; i++) {
        const px = Uint8Array.from({ length: 20 }, (_, k) => (k * 13 + i * 7 + cls.charCodeAt(0)) & 255);
        writeFileSync(fx(`tree/${cls}/${i}.png`), encode({ width: 5, height: 4, data: px, channels: 1, depth: 8 }));
      }
    }
    py(`
import os, sys, tarfile, zipfile
d = sys.argv[1]
files = [(os.path.join(d, 'tree', c, f), 'imgs/' + c + '/' + f) for c in sorted(os.listdir(d + '/tree')) for f in sorted(os.listdir(d + '/tree/' + c))]
with tarfile.open(d + '/tree.tar.gz', 'w:gz') as t:
    for p, a in files: t.add(p, a)
with tarfile.open(d + '/tree.tar', 'w', format=tarfile.PAX_FORMAT) as t:
    for p, a in files: t.add(p, a)
with zipfile.ZipFile(d + '/tree.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    for p, a in files: z.write(p, a)
`, [fx('')]);
    // HDF5 through h5wasm (h5py is not needed): x (12, 4, 3) float32 chunked, y (12,) int64.
    await h5wasm.ready;
    const f = new h5wasm.File(fx('data.h5'), 'w');
    f.create_dataset({ name: 'x', data: Float32Array.from({ length: 144 }, (_, i) => i / 3), shape: [12, 4, 3], chunks: [4, 4, 3] });
    f.create_dataset({ name: 'y', data: BigInt64Array.from({ length: 12 }, (_, i) => BigInt(i % 3)), shape: [12] });
    f.close();
    // MATLAB v7.3: the same HDF5 behind MATLAB's 512-byte header.
    const header = Buffer.alloc(512);
    header.write('MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sun Dec  6 00:00:00 2026 HDF5 schema 1.00 .', 0, 'latin1');
    writeFileSync(fx('v73.mat'), Buffer.concat([header, readFileSync(fx('data.h5'))]));
    // A store made by the real CLI, two splits.
    const r = await runCli(['convert', '-q', '--x', fx('npy/x.npy'), '--y', fx('npy/y.npy'), '--split', 'train=0.5,test=0.5', '--shard-size', '100', fx('store')]);
    assert.equal(r.code, 0, r.stderr);
  });

  after(() => {
    const rows = Object.entries(totals).map(([k, t]) => `${k.padEnd(14)} ok ${String(t.ok).padStart(4)}  clear error ${String(t.clear).padStart(4)}  fail ${t.fail}  (driver peak RSS ${(t.peakRss / 1e6).toFixed(0)} MB)`);
    process.stdout.write(`fuzz counts (seed ${SEED}):\n${rows.join('\n')}\n`);
    tmp.cleanup();
  });

  for (const [file, label, seed] of [['data.csv', 'LF', 20], ['data-cr.csv', 'CR', 21]] as const) {
    test(`CSV (${label} line ends): the native loop and the JS scanner give the same store or the same error for every mutation`, { skip: FALLBACK && 'both arms would be the JS scanner with SLIMFIT_DISABLE=native' }, async () => {
      const work = join(tmp.dir, `work-csv-diff-${label}`);
      mkdirSync(work, { recursive: true });
      const job = { kind: 'convert' as const, fixture: fx(file), targets: [], seed: SEED + seed };
      const native = await fuzz(job, 120, work);
      const js = await fuzz(job, 120, work, disableAlso('csv'));
      assert.deepEqual([...native.results.entries()].filter(([k, v]) => js.results.get(k) !== v).map(([k, v]) => `case ${k}: native ${v} / JS ${js.results.get(k)}`), []);
      assert.deepEqual([...native.failures, ...js.failures], []);
      totals[`CSV ${label} nat/JS`] = { ...native, fail: native.fail + js.fail };
    });
  }

  const decode = { workers: FALLBACK ? '0' : '1' };
  const formats: Array<[string, () => Omit<FuzzJob, 'first' | 'cases' | 'work'>, number, (string | false)?]> = [
    ['npy', () => ({ kind: 'convert', fixture: fx('npy'), targets: ['x.npy', 'y.npy'], pair: { x: 'x.npy', y: 'y.npy' }, seed: SEED }), 150],
    ['npz stored', () => ({ kind: 'convert', fixture: fx('plain.npz'), targets: [], seed: SEED + 1 }), 150],
    ['npz deflated', () => ({ kind: 'convert', fixture: fx('deflated.npz'), targets: [], seed: SEED + 2 }), 150],
    ['IDX', () => ({ kind: 'convert', fixture: fx('idx'), targets: ['x.idx', 'y.idx'], pair: { x: 'x.idx', y: 'y.idx' }, seed: SEED + 3 }), 150],
    ['IDX .gz', () => ({ kind: 'convert', fixture: fx('idxgz'), targets: [], pair: { x: 'x.idx.gz', y: 'y.idx.gz' }, seed: SEED + 15 }), 80],
    ['PNG tree', () => ({ kind: 'convert', fixture: fx('tree'), targets: [], options: decode, seed: SEED + 4 }), 100],
    ['tar', () => ({ kind: 'convert', fixture: fx('tree.tar'), targets: [], options: decode, seed: SEED + 12 }), 150],
    ['tar.gz', () => ({ kind: 'convert', fixture: fx('tree.tar.gz'), targets: [], options: decode, seed: SEED + 5 }), 150],
    ['zip', () => ({ kind: 'convert', fixture: fx('tree.zip'), targets: [], options: decode, seed: SEED + 6 }), 150],
    ['CSV', () => ({ kind: 'convert', fixture: fx('data.csv'), targets: [], seed: SEED + 7 }), 150],
    ['CSV, CR ends', () => ({ kind: 'convert', fixture: fx('data-cr.csv'), targets: [], seed: SEED + 13 }), 100],
    ['mat v5', () => ({ kind: 'convert', fixture: fx('plain.mat'), targets: [], seed: SEED + 8 }), 120],
    ['mat v5 zipped', () => ({ kind: 'convert', fixture: fx('zipped.mat'), targets: [], seed: SEED + 9 }), 120],
    ['HDF5', () => ({ kind: 'convert', fixture: fx('data.h5'), targets: [], seed: SEED + 10 }), 60, FALLBACK && BOTH_PASSES_SAME],
    ['mat v7.3', () => ({ kind: 'convert', fixture: fx('v73.mat'), targets: [], seed: SEED + 16 }), 40, FALLBACK && BOTH_PASSES_SAME],
    ['store', () => ({ kind: 'store', fixture: fx('store'), targets: [], loaderWorkers: FALLBACK ? 0 : undefined, seed: SEED + 11 }), 100],
    ['store manifest', () => ({ kind: 'store', fixture: fx('store'), targets: ['dataset.json'], json: true, loaderWorkers: FALLBACK ? 0 : undefined, seed: SEED + 14 }), 150],
  ];
  /** The unmutated fixture converts; then `cases` mutations each end in a valid store or a clear error. */
  const check = async (name: string, job: () => Omit<FuzzJob, 'first' | 'cases' | 'work'>, cases: number, env: Record<string, string> = {}) => {
    const work = join(tmp.dir, `work-${name.replace(/\W+/g, '-')}`);
    mkdirSync(work, { recursive: true });
    const control = await fuzz({ ...job(), control: true }, 1, work, env);
    assert.equal(control.ok, 1, `${name}: the unmutated fixture must convert: ${control.failures.join('; ')}`);
    const t = await fuzz(job(), cases, work, env);
    totals[name] = t;
    assert.equal(t.ok + t.clear + t.fail, cases);
    assert.deepEqual(t.failures, [], `${name}: ${t.fail} of ${cases} mutations failed`);
    assert.ok(t.peakRss < MAX_RSS, `${name}: driver peak RSS ${t.peakRss} >= ${MAX_RSS}; case ${t.rssJump.case} raised it by ${t.rssJump.bytes} (${t.rssJump.message})`);
  };
  for (const [name, job, cases, skip] of formats) test(`${name}: ${cases} mutations`, { skip }, () => check(name, job, cases));
  // The JavaScript worker-thread pool (transfers, recycled buffers, damaged files reported back as skipped) instead
  // of the native decode threads: the PNG tree (mutations reach the decoder in the worker), in the pass with the
  // addons (the fallback pass decodes inline, above).
  test('PNG tree through the JS decode worker threads (SLIMFIT_DISABLE=png-pool): 30 mutations', { skip: FALLBACK && 'the JS worker pool is fuzzed in the pass with the addons (SLIMFIT_DISABLE=png-pool there)' },
    () => check('PNG tree JS pool', () => ({ kind: 'convert', fixture: fx('tree'), targets: [], options: { workers: '1' }, seed: SEED + 17 }), 30, disableAlso('png-pool')));
});
