// Parallel conversion (issue 22 part 4): `convert --part I/N` + `merge` give the store one `convert` gives (samples,
// labels, order, class names, duplicate and leakage counts, duplicates.json, statistics, the CSV tip and --json; the
// same shard files where parts hold whole shards), checked with numpy reading every shard of both stores; the mpirun
// path (rank env vars in child processes, and a real `mpirun -np 3` when installed); and the errors of merging parts
// that do not belong together.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BIN, ROOT, py, runCli, tempDir } from '../dev/helpers.ts';
import { partRange } from '../src/core/source.ts';
import { mpiEnv } from '../src/core/config.ts';
import { createStats, mergeStatsStates, rangeOfState, statsOfState } from '../src/store/stats.ts';
import { packArchive, writeNotMnist } from './image-fixture.ts';

const { dir: T, cleanup } = tempDir('slimfit-parts-');
after(cleanup);

/** numpy's view of a store: every shard np.load-ed and concatenated per split, plus each shard file's bytes digest. */
function numpyView(store: string): Record<string, { x: string; y: string; n: number; shardDigests: string[] }> {
  return JSON.parse(py(`
import json, sys, os, hashlib, numpy as np
root = sys.argv[1]
m = json.load(open(os.path.join(root, 'dataset.json')))
out = {}
for name, s in m['splits'].items():
    xs = [np.load(os.path.join(root, sh['x']['file'])) for sh in s['shards']]
    ys = [np.load(os.path.join(root, sh['y']['file'])) for sh in s['shards']]
    x = np.concatenate(xs) if xs else np.zeros((0,))
    y = np.concatenate(ys) if ys else np.zeros((0,))
    digests = [hashlib.sha256(open(os.path.join(root, sh[k]['file']), 'rb').read()).hexdigest() for sh in s['shards'] for k in ('x', 'y')]
    for sh in s['shards']:
        for k in ('x', 'y'):
            assert hashlib.sha256(open(os.path.join(root, sh[k]['file']), 'rb').read()).hexdigest() == sh[k]['sha256'], sh[k]['file']
    out[name] = {'x': hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() + str(x.dtype) + str(x.shape),
                 'y': hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest() + str(y.dtype) + str(y.shape),
                 'n': int(len(y)), 'shardDigests': digests}
print(json.dumps(out))
`, [store]));
}

const manifest = (store: string) => JSON.parse(readFileSync(join(store, 'dataset.json'), 'utf8'));

async function cli(args: string[], env?: Record<string, string>) {
  const r = await runCli(args, { env });
  assert.equal(r.code, 0, `slimfit ${args.join(' ')}\n${r.stderr}`);
  return r;
}

/** The summary's lines about duplicates (count, examples) and the CSV tip, with the store's path taken out. */
function summaryLines(stderr: string, store: string): string[] {
  return stderr.split('\n').filter((l) => /have more than one copy|^ {2}\S.* = |^tip: /.test(l))
    .map((l) => l.replaceAll(store, 'OUT').replace(/(of the space).*$/, '$1')); // convert's tip adds its own command line
}

/**
 * Convert `src` once and in 3 parts (+ merge, parts given out of order); assert the two stores are the same, with the
 * same duplicates.json, and that merge's summary and --json say what one convert's do.
 */
async function compareParts(name: string, args: string[], sameShards: boolean, beforeMerge?: (parts: string[]) => void): Promise<{ one: string; merged: string; json: Record<string, unknown> }> {
  const one = join(T, `${name}-one`), merged = join(T, `${name}-merged`);
  const parts = [0, 1, 2].map((k) => join(T, `${name}-p${k}`));
  const [single] = await Promise.all([
    cli(['convert', '-q', '--json', ...args, one]),
    ...parts.map((p, k) => cli(['convert', '-q', '--part', `${k}/3`, ...args, p])),
  ]);
  beforeMerge?.(parts);
  const r = await cli(['merge', '--json', merged, parts[2], parts[0], parts[1]]);
  const res = JSON.parse(r.stdout);
  const json = JSON.parse(single.stdout);
  for (const k of ['samples', 'classNames', 'skipped', 'duplicatesWithin', 'leakage', 'droppedByDedupe', 'droppedFrom', 'suggestedFlags', 'nonFinite']) {
    assert.deepEqual(res[k], json[k], `${name}: --json ${k}`);
  }
  assert.equal(res.duplicateList?.replace(merged, 'OUT') ?? null, json.duplicateList?.replace(one, 'OUT') ?? null, `${name}: --json duplicateList`);
  assert.deepEqual(summaryLines(r.stderr, merged), summaryLines(single.stderr, one), `${name}: summary (duplicate examples, tip)`);
  // Every copy of every duplicated sample, in the same order with the same input positions; written before the manifest.
  const list = (store: string) => (existsSync(join(store, 'duplicates.json')) ? JSON.parse(readFileSync(join(store, 'duplicates.json'), 'utf8')) : null);
  assert.deepEqual(list(merged), list(one), `${name}: duplicates.json`);
  if (list(one)) assert.ok(statSync(join(merged, 'duplicates.json')).mtimeMs <= statSync(join(merged, 'dataset.json')).mtimeMs, 'the list is written before the manifest');
  assert.equal(res.parts, 3);
  assert.equal(res.copied, 0, 'same file system: shards renamed, not copied');
  for (const p of parts) assert.equal(existsSync(p), false, 'the part stores are removed after the merge');
  const a = manifest(one), b = manifest(merged);
  assert.deepEqual(b.fields, a.fields);
  assert.deepEqual(b.classNames, a.classNames);
  assert.deepEqual(Object.keys(b.splits), Object.keys(a.splits));
  for (const s of Object.keys(a.splits)) {
    assert.equal(b.splits[s].samples, a.splits[s].samples, `${name} ${s} samples`);
    assert.deepEqual(b.splits[s].classCounts, a.splits[s].classCounts, `${name} ${s} class counts`);
  }
  assert.deepEqual(b.provenance.duplicates, a.provenance.duplicates, `${name}: duplicate and leakage counts`);
  assert.deepEqual(b.provenance.skipped, a.provenance.skipped, `${name}: skipped inputs`);
  assert.equal(b.provenance.split, a.provenance.split);
  assert.deepEqual(b.provenance.sources, a.provenance.sources);
  assert.equal(b.stats.split, a.stats.split);
  for (const k of ['mean', 'std'] as const) {
    a.stats[k].forEach((v: number, i: number) => assert.ok(Math.abs(v - b.stats[k][i]) <= 1e-9 * Math.max(1, Math.abs(v)), `${name} stats ${k}[${i}]: ${v} vs ${b.stats[k][i]}`));
  }
  assert.equal(b.stats.min, a.stats.min);
  assert.equal(b.stats.max, a.stats.max);
  const na = numpyView(one), nb = numpyView(merged);
  for (const s of Object.keys(na)) {
    assert.equal(nb[s].x, na[s].x, `${name} ${s}: x of every sample, in order (numpy)`);
    assert.equal(nb[s].y, na[s].y, `${name} ${s}: labels, in order (numpy)`);
    if (sameShards) assert.deepEqual(nb[s].shardDigests, na[s].shardDigests, `${name} ${s}: the same shard files`);
  }
  // The merged store is a store like any other: verify re-checksums every shard.
  await cli(['verify', '-q', merged]);
  return { one, merged, json };
}

test('partRange: consecutive, disjoint, covering, whole shards when every part gets one', () => {
  for (const total of [0, 1, 2, 7, 100, 1001]) {
    for (const count of [1, 2, 3, 8]) {
      for (const shardBytes of [undefined, 10, 64]) {
        let at = 0;
        for (let index = 0; index < count; index++) {
          const [a, b] = partRange(total, { index, count, shardBytes });
          assert.equal(a, at);
          assert.ok(b >= a);
          if (shardBytes && total >= count * shardBytes && b < total) assert.equal(b % shardBytes, 0);
          at = b;
        }
        assert.equal(at, total);
      }
    }
  }
  assert.deepEqual(partRange(10, { index: 1, count: 3 }), [3, 6]);
});

test('statistics joined from parts equal one pass (uint8 exactly, float32 to rounding)', () => {
  for (const dtype of ['uint8', 'float32'] as const) {
    const n = 300, c = 3;
    const data = dtype === 'uint8' ? Uint8Array.from({ length: n * c }, (_, i) => (i * 37) % 251) : Float32Array.from({ length: n * c }, (_, i) => 1000 + Math.sin(i) * 5);
    const bytes = new Uint8Array(data.buffer);
    const field = { dtype, shape: [1, 1, c] };
    const whole = createStats(field);
    whole.add(bytes, n);
    const cuts = [0, 70, 71, 300];
    const states = cuts.slice(1).map((end, k) => {
      const s = createStats(field);
      const per = bytes.length / n;
      s.add(bytes.subarray(cuts[k] * per, end * per), end - cuts[k]);
      return s.state();
    });
    const joined = statsOfState(mergeStatsStates(states), 'train')!;
    const one = whole.result('train')!;
    if (dtype === 'uint8') assert.deepEqual(joined, one);
    else one.mean.forEach((m, i) => { assert.ok(Math.abs(m - joined.mean[i]) < 1e-9); assert.ok(Math.abs(one.std[i] - joined.std[i]) < 1e-9); });
    // What the CSV tip needs: whole numbers? smallest and largest value?
    assert.equal(mergeStatsStates(states).integral, whole.integral);
    assert.deepEqual(rangeOfState(mergeStatsStates(states)), whole.range());
  }
  // Whole numbers only when every part saw only whole numbers (a part store of an older version does not say: no).
  const part = (vals: number[]) => { const s = createStats({ dtype: 'float32', shape: [1] }); s.add(new Uint8Array(Float32Array.from(vals).buffer), vals.length); return s.state(); };
  assert.equal(mergeStatsStates([part([1, 2]), part([3, 250])]).integral, true);
  assert.deepEqual(rangeOfState(mergeStatsStates([part([1, 2]), part([3, 250])])), [1, 250]);
  assert.equal(mergeStatsStates([part([1, 2]), part([3.5])]).integral, false);
  assert.equal(mergeStatsStates([part([1, 2]), { ...part([3]), integral: undefined }]).integral, false);
});

test('mpiEnv reads the rank and size mpirun gives, and refuses nonsense', () => {
  assert.equal(mpiEnv({}), null);
  assert.deepEqual(mpiEnv({ OMPI_COMM_WORLD_RANK: '2', OMPI_COMM_WORLD_SIZE: '3', PMIX_NAMESPACE: 'j1' }), { rank: 2, size: 3, job: 'j1' });
  assert.throws(() => mpiEnv({ OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '3' }), /OMPI_COMM_WORLD_RANK/);
  assert.throws(() => mpiEnv({ OMPI_COMM_WORLD_RANK: '0' }), /OMPI_COMM_WORLD_SIZE/);
});

// A CSV of 4x4 'images' (whole numbers 0..255: the --shape tip) with planted duplicates (within train and train/test
// leakage at this seed) and one malformed line: line ranges cut by bytes, split stratified by class as one conversion
// does it.
const csv = join(T, 'd.csv');
py(`
import numpy as np, sys
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (301, 16)).astype(np.float32); y = rng.integers(0, 4, 301)
for i in (40, 150, 151, 260, 299): x[i] = x[7]
with open(sys.argv[1], 'w') as f:
    f.write('label,' + ','.join(f'p{i}' for i in range(16)) + '\\n')
    for i in range(301):
        f.write(f'{y[i]},' + ','.join(repr(float(v)) for v in x[i]) + '\\n')
        if i == 120: f.write('1,2,oops,3,4,5\\n')
`, [csv]);

test('CSV: 3 parts merged equal one convert (stratified split, duplicates and duplicates.json, leakage, skipped line numbers, the --shape tip)', async () => {
  const { one, json } = await compareParts('csv', ['--split', 'train=0.7,test=0.3', '--seed', '5', csv], false);
  assert.equal(json.suggestedFlags, '--shape 4,4,1 --x-dtype uint8', 'the tip, in both (compared above)');
  const doc = JSON.parse(readFileSync(join(one, 'duplicates.json'), 'utf8'));
  assert.deepEqual(doc.duplicates.map((g: { copies: Array<{ inputIndex?: number }> }) => g.copies.map((c) => c.inputIndex ?? null)), [[null, 40, 150, 151, 260, 299]], 'rows of the copies after the first (row 7)');
  // Six equal samples over two splits: every one after the first of its split is a duplicate within that split.
  const within = Object.values(manifest(one).provenance.duplicates.within as Record<string, number>).reduce((a, b) => a + b, 0);
  assert.ok(within === 4 || within === 5, `the planted copies are counted (${within})`);
  assert.match(manifest(one).provenance.skipped[0].path, /d\.csv:123$/);
});

test('image tree and .tar.gz: 3 parts merged equal one convert (files/members split by part, stratified split, bad files listed once)', async () => {
  const fx = writeNotMnist(join(T, 'nm'), 8);
  // Part 1 is made to number its classes in reverse (names reversed, labels rewritten to match, checksums updated):
  // merge must map its labels to the store's classes by name.
  const reverseClasses = (parts: string[]) => py(`
import json, sys, os, hashlib, numpy as np
root = sys.argv[1]
m = json.load(open(os.path.join(root, 'dataset.json')))
k = len(m['classNames'])
m['classNames'] = m['classNames'][::-1]
for s in m['splits'].values():
    s['classCounts'] = s['classCounts'][::-1]
    for sh in s['shards']:
        p = os.path.join(root, sh['y']['file'])
        y = np.load(p)
        np.save(p, (k - 1 - y).astype(y.dtype))
        sh['y']['sha256'] = hashlib.sha256(open(p, 'rb').read()).hexdigest()
        sh['y']['bytes'] = os.path.getsize(p)
json.dump(m, open(os.path.join(root, 'dataset.json'), 'w'))
`, [parts[1]]);
  const { one } = await compareParts('tree', ['--split', 'train=0.75,test=0.25', '--workers', '1', fx.train.dir], false, reverseClasses);
  assert.equal(manifest(one).provenance.skippedCount, 3);
  // The same tree as a .tar.gz: parts are ranges of its members.
  const tgz = join(T, 'nm.tar.gz');
  packArchive(fx.train.dir, tgz, 'nm');
  await compareParts('tgz', ['--workers', '1', tgz], false);
});

const npz = join(T, 'd.npz');
py(`
import numpy as np, sys
rng = np.random.default_rng(1)
x = rng.integers(0, 255, (230, 4, 4, 1), dtype=np.uint8); y = rng.integers(0, 5, 230)
x[200] = x[3]; x[17] = x[3]
np.savez(sys.argv[1], x=x, y=y)
np.save(sys.argv[2], x); np.save(sys.argv[3], y)
# An input that comes split, with a sample of train repeated in test (leakage) and within test.
t = x[:40].copy(); t[5] = x[100]; t[30] = t[6]
np.savez(sys.argv[4], x_train=x, y_train=y, x_test=t, y_test=y[:40])
`, [npz, join(T, 'x.npy'), join(T, 'y.npy'), join(T, 'presplit.npz')]);

test('.npy pair: 3 parts merged equal one convert, shard for shard (parts start on shard boundaries)', async () => {
  // 16-byte samples, 160-byte shards: 10 samples per shard, 23 shards; parts of whole shards give identical files.
  // Each part reads only its rows of the .npy files (the .npz below is streamed to its range).
  await compareParts('npy', ['--shard-size', '160', '--x', join(T, 'x.npy'), '--y', join(T, 'y.npy')], true);
});

test('.npz that comes split: each split cut in 3 parts; merged equals one convert, leakage counted across parts', async () => {
  const { one } = await compareParts('presplit', ['--shard-size', '160', join(T, 'presplit.npz')], true);
  const d = manifest(one).provenance.duplicates;
  assert.ok(d.across['train/test'] >= 1 && d.within.test >= 1, JSON.stringify(d));
});

test('under mpirun (rank env vars): each rank converts its part next to OUT, rank 0 merges; same store as one convert', async () => {
  const out = join(T, 'mpi-out'), one = join(T, 'mpi-one');
  const env = (rank: number) => ({ OMPI_COMM_WORLD_RANK: String(rank), OMPI_COMM_WORLD_SIZE: '3', PMIX_NAMESPACE: 'test-job-1' });
  const [r0] = await Promise.all([
    cli(['convert', '-q', '--shard-size', '160', npz, out], env(0)),
    cli(['convert', '-q', '--shard-size', '160', npz, out], env(1)),
    cli(['convert', '-q', '--shard-size', '160', npz, out], env(2)),
    cli(['convert', '-q', '--shard-size', '160', npz, one]),
  ]);
  assert.match(r0.stderr, /merged 3 parts/);
  assert.deepEqual(numpyView(out), numpyView(one));
  assert.deepEqual(manifest(out).provenance.duplicates, manifest(one).provenance.duplicates);
  assert.deepEqual(readdirSync(T).filter((f) => f.startsWith('mpi-out.')), [], 'no part folders or markers left');

  // Rank 0 alone: the others never come, so it stops after --merge-timeout with a clear error (no hang).
  const lone = await runCli(['convert', '-q', '--merge-timeout', '1', npz, join(T, 'mpi-lone')], { env: env(0) });
  assert.equal(lone.code, 1);
  assert.match(lone.stderr, /rank 0 waited 1 s and the parts of ranks 1, 2 of 3 are still not complete/);
  // A rank that fails says so in its marker: rank 0 stops with that rank's message instead of waiting.
  writeFileSync(join(T, 'mpi-fail.part-1-of-2.slimfit-failed'), 'test-job-1\ndisk full on node 7\n');
  const failed = await runCli(['convert', '-q', npz, join(T, 'mpi-fail')], { env: { ...env(0), OMPI_COMM_WORLD_SIZE: '2' } });
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /rank 1 of 2 failed converting its part: disk full on node 7/);
});

test('real mpirun -np 3: convert by itself equals one convert', { skip: spawnSync('mpirun', ['--version']).status === 0 ? false : 'mpirun is not installed (apt-get install openmpi-bin)' }, async () => {
  const out = join(T, 'real-mpi'), one = join(T, 'real-one');
  const r = spawnSync('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', '3', process.execPath, BIN, 'convert', '-q', '--shard-size', '160', npz, out], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  await cli(['convert', '-q', '--shard-size', '160', npz, one]);
  assert.deepEqual(numpyView(out), numpyView(one));
});

test('merge refuses parts that do not belong together, naming the part', async () => {
  const part = (k: number, n: number, name: string, extra: string[] = [], src = npz) => cli(['convert', '-q', '--part', `${k}/${n}`, ...extra, src, join(T, name)]);
  // A part on another file system (tmpfs /dev/shm when it is one) is copied, not renamed.
  const other = existsSync('/dev/shm') && statSync('/dev/shm').dev !== statSync(T).dev ? mkdtempSync('/dev/shm/slimfit-parts-') : null;
  if (other) after(() => rmSync(other, { recursive: true, force: true }));
  const e2 = other ? join(other, 'e2') : join(T, 'e2');
  await Promise.all([part(0, 3, 'e0'), part(1, 3, 'e1'), part(2, 4, 'e2n4'), cli(['convert', '-q', '--part', '2/3', npz, e2]), part(2, 3, 'e2x'), part(2, 3, 'e2seed', ['--split', 'train=0.5,test=0.5', '--seed', '3']), part(2, 3, 'e2csv', [], csv)]);
  await cli(['convert', '-q', npz, join(T, 'whole')]);
  cpSync(join(T, 'e1'), join(T, 'e1b'), { recursive: true });
  cpSync(join(T, 'e1'), join(T, 'e1s'), { recursive: true });
  const m1s = manifest(join(T, 'e1s'));
  delete m1s.provenance.part.stats.train;
  writeFileSync(join(T, 'e1s', 'dataset.json'), JSON.stringify(m1s));
  let cases = 0;
  const merge = async (parts: string[], re: RegExp) => {
    const out = join(T, `e-out${cases++}`);
    const r = await runCli(['merge', out, ...parts.map((p) => join(T, p))]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, re);
    assert.equal(existsSync(out), false);
  };
  // Refused before anything is locked or moved, so they can run side by side.
  await Promise.all([
    merge(['e0', 'e1'], /e0: part 2\/3 of this conversion is missing/),
    merge(['e0', 'e1', 'e1b'], /e1b: is part 1\/3, and so is .*e1\b/),
    merge(['e0', 'e1', 'e2n4'], /e2n4: is part 2 of 4 parts, but .*e0 is part 0 of 3/),
    merge(['e0', 'e1', 'e2seed'], /e2seed: was converted with different options than .*e0 \(split: .*seed: 3 vs 0/),
    merge(['e0', 'e1', 'e2csv'], /e2csv: was converted from a different source \(d\.csv, \d+ bytes\) than .*e0 \(d\.npz/),
    merge(['e0', 'e1', 'whole'], /whole: is a store, not a part store/),
    merge(['e0', 'e1', 'nothing-here'], /nothing-here: no dataset.json found/),
    merge(['e0', 'e1s', 'e2x'], /e1s: is a part store whose manifest lacks the statistics sums of a split/),
  ]);
  // A merge that fails after moving shards (a damaged hash list, read last) moves them back: the parts still merge.
  py('import numpy as np, sys; np.save(sys.argv[1], np.zeros((5, 3), np.uint32))', [join(T, 'e2x', 'part-hashes.npy')]);
  await merge(['e0', 'e1', 'e2x'], /e2x: part-hashes.npy does not list the part's \d+ samples/);
  const r = await cli(['merge', '--json', join(T, 'e-ok'), join(T, 'e0'), join(T, 'e1'), e2]);
  const res = JSON.parse(r.stdout);
  if (other) assert.ok(res.copied > 0 && res.moved > 0, `renamed ${res.moved}, copied ${res.copied}`);
  const [ok, whole] = [numpyView(join(T, 'e-ok')), numpyView(join(T, 'whole'))];
  assert.equal(ok.train.x, whole.train.x);
  assert.equal(ok.train.y, whole.train.y);
  const [bad, dd] = await Promise.all([runCli(['convert', '--part', '3/3', npz, join(T, 'x')]), runCli(['convert', '--part', '0/3', '--dedupe', npz, join(T, 'x')])]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--part 3\/3/);
  assert.equal(dd.code, 2);
  assert.match(dd.stderr, /--dedupe cannot be used with --part/);
});
