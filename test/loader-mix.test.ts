// mixSources: weights honoured, same seed -> same stream, resume mid-epoch -> the same continuation, class balance per
// source, rank shards disjoint, and mismatched sources refused naming both.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isSlimfitError } from '../src/core/errors.ts';
import { type MixBatch, type MixOptions, type DataSource, mixSources, openDataset } from '../src/loader/index.ts';
import { idsOf, makeStore } from './loader-fixtures.ts';
import { tempDir } from '../dev/helpers.ts';

// B's labels are skewed: 80% class 0, the rest spread over 1..9 (so class balance is visible).
const labelA = (i: number) => i % 10;
const labelB = (i: number) => (i % 5 === 0 ? 1 + (i % 9) : 0);

interface Drawn { origin: number[]; ids: number[]; labels: number[]; digest: string; batches: number }

/** Read `epochs` whole epochs (or `batches` batches) of a mix: per sample its source, id (first 4 x bytes) and label. */
async function draw(loader: ReturnType<typeof mixSources>, o: { epochs?: number; batches?: number } = {}): Promise<Drawn> {
  const d: Drawn = { origin: [], ids: [], labels: [], digest: '', batches: 0 };
  const h = createHash('sha256');
  const take = async (): Promise<boolean> => {
    for await (const b of loader as AsyncIterable<MixBatch>) {
      d.origin.push(...b.origin);
      d.ids.push(...idsOf(b.x as Uint8Array, b.n));
      d.labels.push(...Array.from(b.y as Int32Array));
      h.update(new Uint8Array(b.x.buffer, b.x.byteOffset, b.x.byteLength)); h.update(new Uint8Array(b.y.buffer, b.y.byteOffset, b.y.byteLength));
      if (o.batches !== undefined && ++d.batches >= o.batches) return true;
    }
    return false;
  };
  for (let e = 0; e < (o.epochs ?? 1); e++) if (await take()) break;
  d.digest = h.digest('hex');
  return d;
}

describe('mixSources', () => {
  const tmp = tempDir('slimfit-mix-');
  let a: DataSource, b: DataSource;
  const closers: Array<() => Promise<void>> = [];
  const open = async (dir: string) => { const ds = await openDataset(dir); closers.push(() => ds.close()); return ds; };
  before(async () => {
    await makeStore(join(tmp.dir, 'a'), { n: 3000, label: labelA });
    await makeStore(join(tmp.dir, 'b'), { n: 2000, label: labelB });
    await makeStore(join(tmp.dir, 'wide'), { n: 50, w: 9 });
    await makeStore(join(tmp.dir, 'five'), { n: 50, classes: 5 });
    a = (await open(join(tmp.dir, 'a'))).split('train');
    b = (await open(join(tmp.dir, 'b'))).split('train');
  });
  after(async () => { for (const c of closers) await c(); tmp.cleanup(); });

  const base: MixOptions = { weights: [0.7, 0.3], seed: 3, batchSize: 100, epochSamples: 10_000, workers: 0 };

  test('weights are honoured within 2% over 10k samples; every sample comes from its source; a source repeats reshuffled', async () => {
    const loader = mixSources([a, b], base);
    try {
      assert.deepEqual(loader.weights, [0.7, 0.3]);
      assert.equal(loader.samplesPerEpoch, 10_000);
      assert.equal(loader.batchesPerEpoch, 100);
      const d = await draw(loader);
      assert.equal(d.origin.length, 10_000);
      const fromA = d.origin.filter((o) => o === 0).length / 10_000;
      assert.ok(Math.abs(fromA - 0.7) < 0.02, `share of A ${fromA}`);
      // Label and id agree with the source the batch says: the rows were copied from the right loader.
      d.origin.forEach((o, k) => assert.equal(d.labels[k], (o === 0 ? labelA : labelB)(d.ids[k]), `sample ${k}`));
      // A's first 3000 draws are one pass over A (a permutation), the next 3000 another, in a different order.
      const aIds = d.ids.filter((_, k) => d.origin[k] === 0);
      const pass1 = aIds.slice(0, 3000), pass2 = aIds.slice(3000, 6000);
      assert.deepEqual([...pass1].sort((x, y) => x - y), Array.from({ length: 3000 }, (_, i) => i));
      assert.deepEqual([...pass2].sort((x, y) => x - y), Array.from({ length: 3000 }, (_, i) => i));
      assert.notDeepEqual(pass1, pass2);
      // Weights of 1:3 given as any non-negative numbers.
      const l2 = mixSources([a, b], { ...base, weights: [1, 3] });
      const d2 = await draw(l2);
      await l2.close();
      assert.ok(Math.abs(d2.origin.filter((o) => o === 1).length / 10_000 - 0.75) < 0.02);
    } finally { await loader.close(); }
  });

  test('same seed gives the same stream (whatever the worker count); another seed another', async () => {
    const run = async (o: MixOptions) => { const l = mixSources([a, b], o); try { return await draw(l, { epochs: 2 }); } finally { await l.close(); } };
    const one = await run(base);
    const again = await run({ ...base, workers: 2 });
    assert.equal(again.digest, one.digest);
    assert.deepEqual(again.origin, one.origin);
    const other = await run({ ...base, seed: 4 });
    assert.notEqual(other.digest, one.digest);
  });

  test('resume mid-epoch from a JSON cursor continues exactly where an uninterrupted run goes', async () => {
    const full = mixSources([a, b], base);
    const whole = await draw(full, { epochs: 3 });
    await full.close();
    // Stop in epoch 2 after 37 batches (a source mid-batch), save the cursor as JSON, resume in a new loader.
    const first = mixSources([a, b], base);
    const head = await draw(first, { epochs: 1 });
    const part = await draw(first, { batches: 37 });
    const saved = JSON.stringify(first.cursor());
    await first.close();
    const c = JSON.parse(saved);
    assert.equal(c.epoch, 1);
    assert.equal(c.position, 3700);
    assert.equal(c.sources.length, 2);
    const second = mixSources([a, b], base);
    second.resume(c);
    const rest = await draw(second, { epochs: 2 });
    await second.close();
    assert.deepEqual([...head.ids, ...part.ids, ...rest.ids], whole.ids);
    assert.deepEqual([...head.origin, ...part.origin, ...rest.origin], whole.origin);
    // Breaking out of a loop and iterating the same loader again also continues.
    const same = mixSources([a, b], base);
    const p1 = await draw(same, { batches: 10 });
    const p2 = await draw(same, { epochs: 1 });
    await same.close();
    assert.deepEqual([...p1.ids, ...p2.ids], whole.ids.slice(0, 10_000));
    // A plain loader's cursor or another seed is refused with a sentence.
    const other = mixSources([a, b], base);
    try {
      assert.throws(() => other.resume({ seed: 3, epoch: 0, position: 0, rank: 0, worldSize: 1 }), (e: unknown) => isSlimfitError(e) && /each of this mix's 2 sources/.test(e.message));
      assert.throws(() => other.resume({ ...c, seed: 9 }), (e: unknown) => isSlimfitError(e) && /seed 9/.test(e.message));
    } finally { await other.close(); }
  });

  test('class-balanced option per source: equal class counts from that source', async () => {
    const loader = mixSources([a, { source: b, balanced: true }], { ...base, weights: [0.5, 0.5] });
    try {
      const d = await draw(loader);
      const counts = new Array(10).fill(0);
      d.origin.forEach((o, k) => { if (o === 1) counts[d.labels[k]]++; });
      const n = counts.reduce((s, v) => s + v, 0);
      for (const c of counts) assert.ok(Math.abs(c / n - 0.1) < 0.01, `class shares from B ${counts}`);
      // Without it B keeps its 80% class 0.
      const plain = mixSources([a, b], { ...base, weights: [0.5, 0.5] });
      const d2 = await draw(plain);
      await plain.close();
      const zero = d2.origin.filter((o, k) => o === 1 && d2.labels[k] === 0).length / d2.origin.filter((o) => o === 1).length;
      assert.ok(Math.abs(zero - 0.8) < 0.03, `class 0 share ${zero}`);
    } finally { await loader.close(); }
  });

  test('ranks: each rank draws from its own part of every source', async () => {
    const idsOfA = async (rank: number) => {
      const l = mixSources([a, b], { ...base, rank, worldSize: 2, epochSamples: 4000 });
      try {
        assert.equal(l.samplesPerEpoch, 2000);
        const d = await draw(l);
        return new Set(d.ids.filter((_, k) => d.origin[k] === 0));
      } finally { await l.close(); }
    };
    const r0 = await idsOfA(0), r1 = await idsOfA(1);
    assert.ok(r0.size > 1000 && r1.size > 1000);
    for (const id of r0) assert.ok(!r1.has(id), `sample ${id} of A on both ranks`);
  });

  test('sources that do not fit together are refused naming both; bad weights are refused', async () => {
    const wide = (await open(join(tmp.dir, 'wide'))).split('train');
    const five = (await open(join(tmp.dir, 'five'))).split('train');
    assert.throws(() => mixSources([a, wide]), (e: unknown) => isSlimfitError(e) && e.message.includes(a.name) && e.message.includes(wide.name) && /differ in type or shape/.test(e.message));
    assert.throws(() => mixSources([a, five]), (e: unknown) => isSlimfitError(e) && e.message.includes(a.name) && e.message.includes(five.name) && /class names differ/.test(e.message));
    for (const weights of [[1], [1, -1], [0, 0], [1, NaN]]) {
      assert.throws(() => mixSources([a, b], { weights }), (e: unknown) => isSlimfitError(e) && /weights must be 2 non-negative numbers/.test(e.message), String(weights));
    }
    assert.throws(() => mixSources([a, b], { weight: [1, 2] } as MixOptions), (e: unknown) => isSlimfitError(e) && /unknown option 'weight'/.test(e.message));
  });
});
