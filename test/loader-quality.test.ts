// Shuffle quality: global is a uniform permutation; block is measurably less mixed, and says so in its report.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createLoader, openDataset, shuffleQuality } from '../src/loader/index.ts';
import { idsOf, makeStore } from './loader-fixtures.ts';
import { tempDir } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-loader-q-');
after(() => tmp.cleanup());
const N = 20000;
// Labels sorted by class, the worst case for a weak shuffle: 10 classes of 2000 consecutive samples.
const label = (i: number) => Math.floor(i / 2000);

async function order(opts: Parameters<typeof createLoader>[1]) {
  const dir = join(tmp.dir, 's');
  const ds = await openDataset(dir);
  const loader = createLoader(ds.split('train'), { batchSize: 500, workers: 0, ...opts });
  const ids: number[] = [];
  const classesPerBatch: number[] = [];
  for await (const b of loader) { ids.push(...idsOf(b.x as Uint8Array, b.n)); classesPerBatch.push(new Set(b.y as Int32Array).size); }
  await ds.close();
  return { ids, loader, classesPerBatch, q: shuffleQuality(ids, label) };
}

test('global shuffle is uniform; block shuffle is weaker and reports it honestly', { timeout: 50_000 }, async () => {
  await makeStore(join(tmp.dir, 's'), { n: N, classes: 10, label, shardBytes: 65536 });
  const sorted = shuffleQuality(Array.from({ length: N }, (_, i) => i), label);
  assert.ok(sorted.positionCorrelation > 0.999 && sorted.meanDisplacement === 0 && sorted.classRunMean === 2000, 'the metric sees an unshuffled order');

  for (const seed of [1, 2, 3]) {
    const g = await order({ shuffle: 'global', seed });
    assert.equal(g.loader.shuffleReport.uniform, true);
    assert.ok(Math.abs(g.q.positionCorrelation) < 4 / Math.sqrt(N), `global: position correlation ${g.q.positionCorrelation}`);
    assert.ok(Math.abs(g.q.meanDisplacement - 1 / 3) < 0.01, `global: displacement ${g.q.meanDisplacement}`);
    assert.ok(Math.abs(g.q.classRunMean! / g.q.classRunUniform! - 1) < 0.05, `global: class runs ${g.q.classRunMean} vs uniform ${g.q.classRunUniform}`);
    assert.ok(Math.min(...g.classesPerBatch) === 10, 'global: every batch of 500 has all 10 classes');
  }

  // A window of 2000 samples (10% of the epoch) of 500-sample blocks.
  const b = await order({ shuffle: 'block', seed: 1, shuffleWindow: 2000 * 65, shuffleBlock: 500 * 64 });
  const r = b.loader.shuffleReport;
  assert.equal(r.uniform, false);
  assert.equal(r.windowSamples, 2000);
  assert.equal(r.blockSamples, 500);
  assert.ok(Math.abs(r.windowFraction - 0.1) < 1e-9);
  assert.match(r.note, /NOT a uniform shuffle/);
  // What the report predicts is what we measure: each batch mixes at most windowSamples/blockSamples + 1 blocks,
  // so it holds far fewer classes, and equal-class runs are longer than under a uniform shuffle.
  const maxBlocks = Math.ceil(r.windowSamples / r.blockSamples) + 1;
  assert.ok(Math.max(...b.classesPerBatch) <= maxBlocks, `block: classes per batch ${Math.max(...b.classesPerBatch)} <= ${maxBlocks}`);
  assert.ok(b.q.classRunMean! > 1.2 * b.q.classRunUniform!, `block: class runs ${b.q.classRunMean} vs uniform ${b.q.classRunUniform}`);
  assert.equal(new Set(b.ids).size, N, 'block still visits every sample once');

  // A window as large as the epoch with 1-sample blocks is a uniform shuffle, and is reported as one.
  const w = await order({ shuffle: 'block', seed: 1, shuffleWindow: 1e9, shuffleBlock: 1 });
  assert.equal(w.loader.shuffleReport.uniform, true);
  assert.ok(Math.abs(w.q.classRunMean! / w.q.classRunUniform! - 1) < 0.05);
});
