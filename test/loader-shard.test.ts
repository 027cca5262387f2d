// shuffle: 'shard': shards in a seeded order, windows of K shards shuffled together. Checked on the plan (pure, no I/O)
// for many geometries, then through the loader on real stores: permutation, ranks, resume, subsets, the window bound,
// the window schedule, quality, and numpy as an independent check.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isSlimfitError } from '../src/core/errors.ts';
import { type DataSource, createLoader, holdout, openDataset, shuffleQuality } from '../src/loader/index.ts';
import type { Subset } from '../src/loader/layout.ts';
import { type PlanConfig, createPlan, shardCounts } from '../src/loader/plan.ts';
import { idsOf, makeStore } from './loader-fixtures.ts';
import { py, runCli, tempDir } from '../dev/helpers.ts';

/** A shard-mode plan config over parts of `sizes` samples. */
function config(sizes: number[], o: { worldSize?: number; rank?: number; window: number; seed?: number; subset?: Subset; mode?: PlanConfig['mode'] }): PlanConfig {
  const shardStarts = [0];
  for (const s of sizes) shardStarts.push(shardStarts[shardStarts.length - 1] + s);
  const n = o.subset ? o.subset.count : shardStarts[shardStarts.length - 1];
  const worldSize = o.worldSize ?? 1;
  return {
    n, subset: o.subset, mode: o.mode ?? 'shard', balanced: false, seed: o.seed ?? 3, rank: o.rank ?? 0, worldSize, perRank: Math.floor(n / worldSize),
    blockSamples: 4, windowSamples: 64, shardStarts, shardSamples: shardCounts(shardStarts, o.subset), shardWindow: o.window,
  };
}

/** This rank's whole epoch. */
function epochOf(c: PlanConfig, epoch: number): number[] {
  const out = new Float64Array(c.perRank);
  createPlan(c).samples(epoch, 0, c.perRank, out);
  return Array.from(out);
}

/** Part of file id `id`. */
const partOf = (starts: number[], id: number) => { let p = 0; while (starts[p + 1] <= id) p++; return p; };

/** Parts in order of first read in `ids` (brute force). */
function firstReads(starts: number[], ids: number[]): number[] {
  const seen = new Set<number>(), out: number[] = [];
  for (const id of ids) { const p = partOf(starts, id); if (!seen.has(p)) { seen.add(p); out.push(p); } }
  return out;
}

/** Most parts whose [first, last] read intervals overlap one position: the shards "open" at once. */
function maxLive(starts: number[], ids: number[]): number {
  const first = new Map<number, number>(), last = new Map<number, number>();
  ids.forEach((id, q) => { const p = partOf(starts, id); if (!first.has(p)) first.set(p, q); last.set(p, q); });
  const delta = new Int32Array(ids.length + 1);
  for (const [p, f] of first) { delta[f]++; delta[last.get(p)! + 1]--; }
  let live = 0, most = 0;
  for (const d of delta) { live += d; most = Math.max(most, live); }
  return most;
}

// Shard sizes: equal, a last partial shard, a 1-sample shard, uneven, and one shard.
const GEOMETRIES: number[][] = [
  [100, 100, 100, 100, 100, 100, 100, 37],
  [64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 1],
  [5, 300, 17, 1, 250, 90, 90, 3, 400, 12, 7],
  [777],
  // Big windows with tiny shards: a tiny shard's first read is often past the scan of the window's first 64 K positions.
  [2000, 3, 1500, 2, 1800, 1],
];

describe('shard plan (pure)', () => {
  test('every rank gets a disjoint equal-sized stream; their concatenation is the same order for any worldSize', () => {
    for (const sizes of GEOMETRIES) {
      const N = sizes.reduce((a, b) => a + b, 0);
      for (const window of [1, 3, 8]) {
        for (const epoch of [0, 1]) {
          const whole = epochOf(config(sizes, { window }), epoch);
          assert.deepEqual([...whole].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i), `a permutation (sizes ${sizes}, window ${window})`);
          for (const worldSize of [2, 3, 4]) {
            const streams = Array.from({ length: worldSize }, (_, rank) => epochOf(config(sizes, { window, worldSize, rank }), epoch));
            const perRank = Math.floor(N / worldSize);
            for (const s of streams) assert.equal(s.length, perRank);
            // The same global order cut into contiguous parts: the n % worldSize left over are the stream's last samples.
            assert.deepEqual(streams.flat(), whole.slice(0, perRank * worldSize), `worldSize ${worldSize}`);
            assert.equal(new Set(streams.flat()).size, perRank * worldSize, 'disjoint');
          }
        }
      }
    }
  });

  test('deterministic per (seed, epoch); epochs and seeds differ; positions can be asked in any pieces', () => {
    const sizes = GEOMETRIES[0];
    const a = epochOf(config(sizes, { window: 3 }), 2);
    assert.deepEqual(epochOf(config(sizes, { window: 3 }), 2), a);
    assert.notDeepEqual(epochOf(config(sizes, { window: 3 }), 3), a);
    assert.notDeepEqual(epochOf(config(sizes, { window: 3, seed: 4 }), 2), a);
    // Random access: the same order whatever the chunks (this is what makes mid-epoch resume exact).
    const plan = createPlan(config(sizes, { window: 3 }));
    const got: number[] = [];
    for (let q = 0, step = 1; q < a.length; q += step, step = (step * 7) % 53 + 1) {
      const m = Math.min(step, a.length - q), out = new Float64Array(m);
      plan.samples(2, q, m, out);
      got.push(...out);
    }
    assert.deepEqual(got, a);
  });

  test('the bound: at most K shards are read at any position, each shard only inside its window', () => {
    for (const sizes of GEOMETRIES) {
      for (const window of [1, 2, 3, 5]) {
        for (const worldSize of [1, 3]) {
          const c = config(sizes, { window, worldSize, rank: worldSize - 1 });
          const ids = epochOf(c, 1);
          assert.ok(maxLive(c.shardStarts!, ids) <= window, `sizes ${sizes}, K ${window}: ${maxLive(c.shardStarts!, ids)} shards live at once`);
        }
      }
    }
    // And it is not vacuous: the whole window is in play (a window of K equal shards keeps all K live in its middle).
    const c = config(GEOMETRIES[1], { window: 4 });
    assert.equal(maxLive(c.shardStarts!, epochOf(c, 0)), 4);
  });

  test('shardSchedule lists the parts in the order of their first read, from any position, for every mode', () => {
    for (const sizes of GEOMETRIES) {
      for (const [mode, window] of [['shard', 1], ['shard', 3], ['shard', 2], ['global', 1], ['none', 1], ['block', 1]] as const) {
        for (const worldSize of [1, 2]) {
          const c = config(sizes, { window, worldSize, rank: worldSize - 1, mode });
          const ids = epochOf(c, 5), plan = createPlan(c);
          for (const pos of [0, 1, 63, 700, 1400, 2600, Math.floor(c.perRank / 2), c.perRank - 1, c.perRank].filter((p) => p <= c.perRank)) {
            assert.deepEqual(plan.shardSchedule(5, pos), firstReads(c.shardStarts!, ids.slice(pos)), `${mode} K ${window} sizes ${sizes} ws ${worldSize} from ${pos}`);
          }
        }
      }
    }
  });

  test('a subset (holdout view) keeps its members, grouped by the parent shards', () => {
    const sizes = GEOMETRIES[2], total = sizes.reduce((a, b) => a + b, 0);
    const members = (offset: number, count: number) => {
      const c = config(sizes, { window: 3, subset: { total, seed: 7, offset, count } });
      return { c, ids: epochOf(c, 0) };
    };
    const train = members(0, 1000), val = members(1000, total - 1000);
    assert.equal(new Set([...train.ids, ...val.ids]).size, total, 'train and val views cover the parent once');
    assert.equal(train.ids.length, 1000);
    for (const v of [train, val]) {
      assert.ok(maxLive(v.c.shardStarts!, v.ids) <= 3);
      assert.deepEqual(createPlan(v.c).shardSchedule(0, 10), firstReads(v.c.shardStarts!, v.ids.slice(10)));
    }
    assert.deepEqual(shardCounts(train.c.shardStarts!, train.c.subset).map((k, i) => k + shardCounts(val.c.shardStarts!, val.c.subset)[i]), sizes);
  });
});

describe('shard shuffle through the loader', () => {
  const tmp = tempDir('slimfit-loader-shard-');
  const dir = join(tmp.dir, 's');
  const N = 2003; // 64 samples per shard: 31 full shards and a partial one of 19
  let src: DataSource;
  let close: () => Promise<void>;
  before(async () => {
    await makeStore(dir, { n: N, shardBytes: 4096 });
    const ds = await openDataset(dir);
    src = ds.split('train');
    close = () => ds.close();
  });
  after(async () => { await close(); tmp.cleanup(); });

  async function ids(loader: ReturnType<typeof createLoader>, maxBatches = Infinity): Promise<number[]> {
    const out: number[] = [];
    let k = 0;
    for await (const b of loader) { out.push(...idsOf(b.x as Uint8Array, b.n)); if (++k >= maxBatches) break; }
    return out;
  }

  test('every sample once per epoch, the plan order, the same with 0 or 2 workers and for every rank split', async () => {
    const whole: number[][] = [];
    for (const workers of [0, 2]) {
      const loader = createLoader(src, { shuffle: 'shard', shuffleShards: 4, batchSize: 100, workers, seed: 8 });
      assert.equal(loader.shuffleReport.mode, 'shard');
      assert.equal(loader.shuffleReport.shards, 32);
      assert.equal(loader.shuffleReport.uniform, false);
      assert.match(loader.shuffleReport.note, /32 shards in random order, read 4 at a time.*NOT a uniform shuffle/);
      const e0 = await ids(loader), e1 = await ids(loader);
      await loader.close();
      assert.deepEqual([...e0].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i));
      assert.notDeepEqual(e0, e1, 'a new order every epoch');
      whole.push(e0);
    }
    assert.deepEqual(whole[0], whole[1], 'worker count does not change the order');
    for (const worldSize of [2, 3]) {
      const streams: number[] = [];
      for (let rank = 0; rank < worldSize; rank++) {
        const loader = createLoader(src, { shuffle: 'shard', shuffleShards: 4, batchSize: 64, workers: rank % 2, seed: 8, rank, worldSize });
        const s = await ids(loader);
        await loader.close();
        assert.equal(s.length, Math.floor(N / worldSize));
        streams.push(...s);
      }
      assert.deepEqual(streams, whole[0].slice(0, streams.length), `worldSize ${worldSize}: the same global order, cut in equal parts`);
    }
  });

  test('resume mid-epoch (and across the epoch end) continues identically', async () => {
    const ref = createLoader(src, { shuffle: 'shard', shuffleShards: 3, batchSize: 48, workers: 1, seed: 2 });
    const full = [...(await ids(ref)), ...(await ids(ref))];
    await ref.close();
    for (const cut of [1, 13, 41]) { // 42 batches per epoch: mid-window, and the last batch of the epoch
      const a = createLoader(src, { shuffle: 'shard', shuffleShards: 3, batchSize: 48, workers: 2, seed: 2 });
      const head = await ids(a, cut);
      const cursor = JSON.parse(JSON.stringify(a.cursor()));
      await a.close();
      const b = createLoader(src, { shuffle: 'shard', shuffleShards: 3, batchSize: 48, workers: 0, seed: 2 });
      b.resume(cursor);
      const rest = await ids(b);
      const next = cursor.position === 0 ? [] : await ids(b);
      await b.close();
      assert.deepEqual([...head, ...rest, ...next].slice(0, full.length), full.slice(0, head.length + rest.length + next.length), `cut after ${cut} batches`);
    }
  });

  test('the window schedule from the loader matches what it reads; balanced is refused clearly', async () => {
    const loader = createLoader(src, { shuffle: 'shard', shuffleShards: 4, batchSize: 50, workers: 0, seed: 1 });
    const first = await ids(loader, 7);
    const c = loader.cursor();
    const schedule = loader.shardSchedule();
    const rest = await ids(loader);
    await loader.close();
    assert.equal(c.position, 350);
    assert.deepEqual(schedule, firstReads([...Array.from({ length: 32 }, (_, i) => i * 64), N], rest));
    assert.equal(loader.shardSchedule(0, 0).length, 32);
    assert.ok(first.length === 350);
    assert.throws(() => createLoader(src, { shuffle: 'shard', balanced: true }), (e: Error) => isSlimfitError(e) && /balanced draws samples at random; use it with shuffle: 'global'/.test(e.message));
    assert.throws(() => createLoader(src, { shuffle: 'shard', shuffleShards: 0 }), (e: Error) => isSlimfitError(e) && /shuffleShards/.test(e.message));
    // A source whose parts come over the network defaults to the shard shuffle (balanced sampling keeps global).
    const remote = { ...src, remote: true } as DataSource;
    for (const [opts, mode] of [[{}, 'shard'], [{ balanced: true }, 'global'], [{ shuffle: 'global' }, 'global']] as const) {
      const l = createLoader(remote, { workers: 0, ...opts });
      assert.equal(l.shuffleReport.mode, mode, JSON.stringify(opts));
      await l.close();
    }
    const local = createLoader(src, { workers: 0 });
    assert.equal(local.shuffleReport.mode, 'global');
    await local.close();
  });

  test('slimfit train --shuffle shard --shuffle-shards K: trains, saves K in run.json, a resume keeps it', { timeout: 60_000 }, async () => {
    const run = join(tmp.dir, 'run');
    const env = { SLIMFIT_DISABLE: 'engine' };
    const [r, wrongMode, badK, badMode] = await Promise.all([
      runCli(['train', dir, '--model', 'mlp', '--epochs', '1', '--batch', '100', '--shuffle', 'shard', '--shuffle-shards', '3', '--workers', '1', '--out', run], { env }),
      runCli(['train', dir, '--shuffle-shards', '3', '--out', join(tmp.dir, 'r2')], { env }),
      runCli(['train', dir, '--shuffle', 'shard', '--shuffle-shards', '0']),
      runCli(['train', dir, '--shuffle', 'shards']),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8'));
    assert.equal(cfg.shuffle, 'shard');
    assert.equal(cfg.shuffleShards, 3);
    assert.match(readFileSync(join(run, 'report.md'), 'utf8'), /shuffle shard \(3 shards per window\)/);
    assert.equal(wrongMode.code, 1, wrongMode.stderr);
    assert.match(wrongMode.stderr, /slimfit: error: --shuffle-shards 3 sets the window of --shuffle shard, but this run shuffles 'global'/);
    assert.equal(badK.code, 2);
    assert.match(badK.stderr, /--shuffle-shards must be a whole number >= 1/);
    assert.equal(badMode.code, 2);
    assert.match(badMode.stderr, /unknown --shuffle 'shards'[\s\S]*global, block, shard or none/);
    const again = await runCli(['train', '--resume', run, '--epochs', '2', '--shuffle-shards', '4'], { env });
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, /started with --shuffle-shards 3; its checkpoint cannot continue with --shuffle-shards 4/);
  });

  test('trainRun on a source marked remote shuffles by shard windows unless told otherwise, and saves that', { timeout: 60_000 }, async () => {
    const { trainRun } = await import('../src/train/run.ts');
    // 200 samples: a holdout view of a remote source is remote too.
    const remote = holdout({ ...src, remote: true } as DataSource, 0.9, 1).train;
    const common = { model: 'mlp', epochs: 1, batchSize: 100, workers: 0, valFraction: 0, evaluateTest: false, progress: false, log: () => {} };
    for (const [name, extra, mode, shards] of [['dflt', {}, 'shard', 8], ['asked', { shuffle: 'global' }, 'global', undefined]] as const) {
      const out = join(tmp.dir, `remote-${name}`);
      await trainRun(remote, { ...common, ...extra, out });
      const cfg = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
      assert.equal(cfg.shuffle, mode, name);
      assert.equal(cfg.shuffleShards, shards, name);
    }
  });

  test('holdout views: each a permutation of its own members, together the whole store', async () => {
    const h = holdout(src, 0.25, 4);
    const got: number[][] = [];
    for (const v of [h.train, h.val]) {
      const loader = createLoader(v, { shuffle: 'shard', shuffleShards: 2, batchSize: 64, workers: 1, seed: 5 });
      const e = await ids(loader);
      await loader.close();
      assert.equal(new Set(e).size, v.samples);
      got.push(e);
    }
    assert.deepEqual([...got[0], ...got[1]].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i));
  });
});

test('quality: far better mixed than no shuffle, measured against global; numpy agrees on the order and the numbers', { timeout: 60_000 }, async () => {
  const tmp = tempDir('slimfit-loader-shard-q-');
  try {
    // Class-sorted labels, the worst case: 10 classes of 2000 consecutive samples, 1000 samples per shard (20 shards).
    const N = 20000, label = (i: number) => Math.floor(i / 2000);
    const dir = join(tmp.dir, 'q');
    await makeStore(dir, { n: N, classes: 10, label, shardBytes: 64 * 1000 });
    const ds = await openDataset(dir);
    const order = async (opts: Parameters<typeof createLoader>[1]) => {
      const loader = createLoader(ds.split('train'), { batchSize: 500, workers: 0, seed: 1, ...opts });
      const out: number[] = [];
      for await (const b of loader) out.push(...idsOf(b.x as Uint8Array, b.n));
      await loader.close();
      return { ids: out, q: shuffleQuality(out, label), report: loader.shuffleReport };
    };
    const none = await order({ shuffle: false });
    const global = await order({ shuffle: 'global' });
    const shard = await order({ shuffle: 'shard', shuffleShards: 4 }); // windows of 4 shards: 20% of the epoch
    const one = await order({ shuffle: 'shard', shuffleShards: 20 });
    await ds.close();
    assert.equal(none.q.classRunMean, 2000);
    // Windows of 4 of the 20 shards hold at most 4 classes (2 shards per class) among 10, so runs are longer than
    // uniform (~1.11), but orders of magnitude shorter than stored order.
    assert.ok(shard.q.classRunMean! < none.q.classRunMean! / 500, `shard class runs ${shard.q.classRunMean}`);
    assert.ok(shard.q.classRunMean! > global.q.classRunMean!, 'and honestly not as good as global');
    assert.ok(shard.q.classRunMean! < 1.6 * shard.q.classRunUniform!, `shard class runs ${shard.q.classRunMean} vs uniform ${shard.q.classRunUniform}`);
    assert.ok(Math.abs(shard.q.positionCorrelation) < 0.3, `shard position correlation ${shard.q.positionCorrelation}`);
    assert.ok(shard.q.meanDisplacement > 0.25, `shard displacement ${shard.q.meanDisplacement} (uniform 1/3)`);
    assert.equal(shard.report.windowFraction, 0.2);
    // One window over every shard is a uniform shuffle, reported as one.
    assert.equal(one.report.uniform, true);
    assert.ok(Math.abs(one.q.classRunMean! / one.q.classRunUniform! - 1) < 0.05);
    assert.ok(Math.abs(one.q.meanDisplacement - 1 / 3) < 0.01);

    // numpy, from the ids alone: a permutation; each run of 4 shards' samples (5 windows of 4000) is exactly 4 whole
    // shards; and the same correlation, displacement and class runs as shuffleQuality.
    const f = join(tmp.dir, 'order.json');
    writeFileSync(f, JSON.stringify({ ids: shard.ids, q: shard.q }));
    const out = py(`
import json, sys, numpy as np
d = json.load(open(sys.argv[1])); ids = np.array(d['ids']); q = d['q']; n = len(ids)
assert np.array_equal(np.sort(ids), np.arange(20000))
for w in range(5):
    parts = np.unique(ids[w * 4000:(w + 1) * 4000] // 1000)
    assert len(parts) == 4, parts
    assert np.array_equal(np.sort(ids[w * 4000:(w + 1) * 4000]), np.sort(np.concatenate([np.arange(p * 1000, p * 1000 + 1000) for p in parts])))
pos = np.arange(n)
corr = np.corrcoef(pos, ids)[0, 1]
disp = np.abs(pos - ids).mean() / n
lab = ids // 2000
runs = 1 + np.count_nonzero(lab[1:] != lab[:-1])
assert abs(corr - q['positionCorrelation']) < 1e-9, (corr, q['positionCorrelation'])
assert abs(disp - q['meanDisplacement']) < 1e-12
assert abs(n / runs - q['classRunMean']) < 1e-9
print('ok')
`, [f]);
    assert.equal(out.trim(), 'ok');
  } finally { tmp.cleanup(); }
});
