// The loader hands out every sample exactly once per epoch, in an order fixed by (seed, epoch) whatever the worker count.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isSlimfitError } from '../src/core/errors.ts';
import { type Batch, type DataSource, createLoader, fromNpy, fromNpz, holdout, openDataset } from '../src/loader/index.ts';
import { gatherAddon } from '../src/loader/native.ts';
import { chooseIo } from '../src/loader/loader.ts';
import { defaultWorkers } from '../src/loader/defaults.ts';
import { availableParallelism } from 'node:os';
import { permutation } from '../src/core/permutation.ts';
import { idsOf, makeNpyPair, makeStore } from './loader-fixtures.ts';
import { needsAddon, py, tempDir } from '../dev/helpers.ts';

type Opts = Parameters<typeof createLoader>[1];

/** One epoch: the sample ids of each batch (x raw uint8 with the id in its first 4 bytes) and the batches. */
async function epochIds(src: DataSource, opts: Opts): Promise<{ ids: number[][]; batches: Batch[]; loader: ReturnType<typeof createLoader> }> {
  const loader = createLoader(src, opts);
  const ids: number[][] = [];
  const batches: Batch[] = [];
  for await (const b of loader) { ids.push(idsOf(b.x as Uint8Array, b.n)); batches.push(b); }
  return { ids, batches, loader };
}

describe('loader over a store', () => {
  const tmp = tempDir('slimfit-loader-');
  const stores: Record<number, string> = {};
  before(async () => {
    for (const n of [1, 37, 1000, 2003]) {
      stores[n] = join(tmp.dir, `s${n}`);
      await makeStore(stores[n], { n, shardBytes: 4096 }); // 64 samples per shard: many shards
    }
  });
  after(() => tmp.cleanup());

  test('every sample exactly once per epoch: many N, batch sizes, shuffles, dropLast (main thread)', async () => {
    for (const n of [1, 37, 1000, 2003]) {
      const ds = await openDataset(stores[n]);
      const src = ds.split('train');
      for (const batchSize of [1, 10, 128, 5000]) {
        for (const shuffle of ['global', 'block', 'shard', false] as const) {
          for (const dropLast of [false, true]) {
            if (batchSize === 1 && n > 100) continue; // slow and adds nothing
            // B=10 reads with plain JS positioned reads, the others with the native gather addon when it is built.
            const { ids, batches, loader } = await epochIds(src, { batchSize, shuffle, dropLast, workers: 0, seed: 5, shuffleWindow: 2000, shuffleShards: 3, native: batchSize !== 10 });
            const flat = ids.flat();
            const what = `n=${n} B=${batchSize} ${shuffle} dropLast=${dropLast}`;
            assert.equal(batches.length, loader.batchesPerEpoch, what);
            assert.equal(new Set(flat).size, flat.length, `duplicates: ${what}`);
            if (!dropLast) {
              assert.deepEqual([...flat].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i), what);
              if (n % batchSize) assert.equal(batches[batches.length - 1].n, n % batchSize, `partial last batch: ${what}`);
            } else {
              assert.equal(flat.length, Math.floor(n / batchSize) * batchSize, what);
              assert.ok(batches.every((b) => b.n === batchSize), what);
            }
            for (const b of batches) {
              assert.deepEqual(b.xShape, [b.n, 8, 8, 1]);
              assert.deepEqual(b.yShape, [b.n]);
              assert.ok(b.y instanceof Int32Array);
              const bid = idsOf(b.x as Uint8Array, b.n);
              for (let k = 0; k < b.n; k++) assert.equal(b.y[k], bid[k] % 10, 'label travels with its sample');
            }
            if (shuffle === false) assert.deepEqual(flat, Array.from({ length: flat.length }, (_, i) => i), 'unshuffled = stored order');
            await loader.close();
          }
        }
      }
      await ds.close();
    }
  });

  test('order depends only on (seed, epoch): identical for 0, 1 and 2 workers, over two epochs', async () => {
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    for (const shuffle of ['global', 'block', 'shard'] as const) {
      const runs: number[][][] = [];
      for (const workers of [0, 1, 2]) {
        const loader = createLoader(src, { batchSize: 64, shuffle, workers, seed: 11, shuffleWindow: 5000, prefetch: 3 });
        const epochs: number[][] = [];
        for (let e = 0; e < 2; e++) {
          const ids: number[] = [];
          for await (const b of loader) { assert.equal(b.epoch, e); ids.push(...idsOf(b.x as Uint8Array, b.n)); }
          epochs.push(ids);
        }
        await loader.close();
        assert.equal(new Set(epochs[0]).size, 2003);
        assert.notDeepEqual(epochs[0], epochs[1], 'a new epoch has a new order');
        runs.push(epochs);
      }
      assert.deepEqual(runs[1], runs[0], `${shuffle}: 1 worker = main thread`);
      assert.deepEqual(runs[2], runs[0], `${shuffle}: 2 workers = main thread`);
    }
    const other = await epochIds(src, { batchSize: 64, workers: 0, seed: 12 });
    const same = await epochIds(src, { batchSize: 64, workers: 0, seed: 11 });
    assert.notDeepEqual(other.ids.flat(), same.ids.flat(), 'another seed, another order');
    await ds.close();
  });

  test('ranks: disjoint, equal-sized streams with equal batch counts; their union is the epoch', async () => {
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    for (const [worldSize, workers] of [[1, 0], [3, 0], [4, 2], [7, 0]] as const) {
      for (const shuffle of ['global', 'block', 'shard'] as const) {
        const per: number[][] = [];
        const counts: number[] = [];
        for (let rank = 0; rank < worldSize; rank++) {
          const { ids, loader } = await epochIds(src, { batchSize: 50, shuffle, rank, worldSize, workers: rank === 0 ? workers : 0, seed: 2, shuffleWindow: 4000 });
          per.push(ids.flat());
          counts.push(ids.length);
          assert.equal(ids.length, loader.batchesPerEpoch);
          assert.equal(ids.flat().length, loader.samplesPerEpoch);
          await loader.close();
        }
        const all = per.flat();
        const each = Math.floor(2003 / worldSize);
        assert.ok(per.every((p) => p.length === each), `equal-sized ranks (${worldSize})`);
        assert.ok(counts.every((c) => c === counts[0]), 'equal batch counts');
        assert.equal(new Set(all).size, all.length, `disjoint ranks (${worldSize}, ${shuffle})`);
        assert.equal(all.length, 2003 - (2003 % worldSize), 'union = the epoch minus the n % worldSize left over');
      }
    }
    // 2003 samples over 3 ranks leave 2 out; which ones changes every epoch.
    const missing: number[][] = [];
    for (let epoch = 0; epoch < 2; epoch++) {
      const seen = new Set<number>();
      for (let rank = 0; rank < 3; rank++) {
        const l = createLoader(src, { batchSize: 100, rank, worldSize: 3, workers: 0, seed: 2 });
        l.resume({ seed: 2, epoch, position: 0, rank, worldSize: 3 });
        for await (const b of l) for (const i of idsOf(b.x as Uint8Array, b.n)) seen.add(i);
      }
      missing.push(Array.from({ length: 2003 }, (_, i) => i).filter((i) => !seen.has(i)));
    }
    assert.equal(missing[0].length, 2);
    assert.notDeepEqual(missing[0], missing[1]);
    await ds.close();
  });

  test('resume from a mid-epoch cursor yields exactly the rest of the epoch (also with another worker count)', async () => {
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    for (const shuffle of ['global', 'block', 'shard'] as const) {
      const full = (await epochIds(src, { batchSize: 64, shuffle, workers: 0, seed: 9, shuffleWindow: 3000 })).ids.flat();
      const a = createLoader(src, { batchSize: 64, shuffle, workers: 1, seed: 9, shuffleWindow: 3000 });
      const seen: number[] = [];
      let k = 0;
      for await (const b of a) { seen.push(...idsOf(b.x as Uint8Array, b.n)); if (++k === 7) break; }
      const cur = JSON.parse(JSON.stringify(a.cursor()));
      assert.deepEqual(cur, { seed: 9, epoch: 0, position: 7 * 64, rank: 0, worldSize: 1 });
      await a.close();
      const b2 = createLoader(src, { batchSize: 64, shuffle, workers: 2, seed: 9, shuffleWindow: 3000 });
      b2.resume(cur);
      const rest: number[] = [];
      for await (const b of b2) rest.push(...idsOf(b.x as Uint8Array, b.n));
      assert.deepEqual(seen, full.slice(0, 7 * 64));
      assert.deepEqual(rest, full.slice(7 * 64), `${shuffle}: the rest, exactly`);
      assert.deepEqual(b2.cursor(), { seed: 9, epoch: 1, position: 0, rank: 0, worldSize: 1 });
      // Breaking and iterating again on the same loader also continues where it stopped.
      const c = createLoader(src, { batchSize: 64, shuffle, workers: 0, seed: 9, shuffleWindow: 3000 });
      const again: number[] = [];
      k = 0;
      for await (const b of c) { again.push(...idsOf(b.x as Uint8Array, b.n)); if (++k === 3) break; }
      for await (const b of c) again.push(...idsOf(b.x as Uint8Array, b.n));
      assert.deepEqual(again, full);
      await b2.close(); await c.close();
    }
    const d = createLoader(src, { seed: 1, workers: 0 });
    assert.throws(() => d.resume({ seed: 2, epoch: 0, position: 0, rank: 0, worldSize: 1 }), (e) => isSlimfitError(e) && /seed 2/.test((e as Error).message));
    await ds.close();
  });

  test('transforms: scale/shift, stats, flat layout, one-hot, seeded noise and shift (same with workers)', async () => {
    const ds = await openDataset(stores[1000]);
    const src = ds.split('train');
    const raw = await epochIds(src, { batchSize: 100, workers: 0, seed: 4 });
    const scaled = await epochIds(src, { batchSize: 100, workers: 0, seed: 4, normalize: { scale: 1 / 255, shift: -0.5 }, layout: 'flat', oneHot: true });
    for (let i = 0; i < raw.batches.length; i++) {
      const r = raw.batches[i], s = scaled.batches[i];
      assert.deepEqual(s.xShape, [100, 64]);
      assert.deepEqual(s.yShape, [100, 10]);
      assert.ok(s.x instanceof Float32Array);
      for (let e = 0; e < r.x.length; e++) assert.ok(Math.abs((s.x[e] as number) - ((r.x[e] as number) / 255 - 0.5)) < 1e-6);
      for (let k = 0; k < 100; k++) for (let c = 0; c < 10; c++) assert.equal(s.y[k * 10 + c], c === r.y[k] ? 1 : 0);
    }
    const st = ds.manifest.stats!;
    const z = await epochIds(src, { batchSize: 1000, workers: 0, normalize: 'stats' });
    const xz = z.batches[0].x as Float32Array;
    let m = 0;
    for (const v of xz) m += v;
    assert.ok(Math.abs(m / xz.length) < 1e-3, 'stats normalization centres the split');
    assert.ok(st.std[0] > 0);
    // Noise and shift: deterministic, identical across worker counts, and shaped as asked.
    const aug = { batchSize: 100, seed: 4, normalize: { scale: 1, shift: 0 }, noise: 0.5, shift: 2 } as const;
    const a0 = await epochIds(src, { ...aug, workers: 0 });
    const a2 = await epochIds(src, { ...aug, workers: 2 });
    await a2.loader.close();
    for (let i = 0; i < a0.batches.length; i++) assert.deepEqual(a2.batches[i].x, a0.batches[i].x);
    let diffSum = 0, diffSq = 0, count = 0;
    const plain = await epochIds(src, { batchSize: 100, seed: 4, workers: 0, shift: 2 });
    for (let i = 0; i < raw.batches.length; i++) {
      const r = raw.batches[i].x as Uint8Array, sh = plain.batches[i].x as Uint8Array, nz = a0.batches[i].x as Float32Array;
      for (let k = 0; k < 100; k++) {
        const img = r.subarray(k * 64, (k + 1) * 64), out = sh.subarray(k * 64, (k + 1) * 64);
        // The shifted image is one of the 25 shifts of the original, with zeros filled in.
        const ok = [-2, -1, 0, 1, 2].some((dy) => [-2, -1, 0, 1, 2].some((dx) => {
          for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) {
            const sy = y - dy, sx = x - dx;
            const want = sy >= 0 && sy < 8 && sx >= 0 && sx < 8 ? img[sy * 8 + sx] : 0;
            if (out[y * 8 + x] !== want) return false;
          }
          return true;
        }));
        assert.ok(ok, `sample ${k} of batch ${i} is a shifted copy`);
        for (let e = 0; e < 64; e++) { const d = nz[k * 64 + e] - out[e]; diffSum += d; diffSq += d * d; count++; }
      }
    }
    assert.ok(Math.abs(diffSum / count) < 0.01, 'noise has mean 0');
    assert.ok(Math.abs(Math.sqrt(diffSq / count) - 0.5) < 0.01, 'noise has the asked std');
    await assert.rejects(async () => { for await (const _ of createLoader(src, { workers: 0, oneHot: 3 })) void _; }, /label \d+ of sample \d+ .* is not a class index below 3/);
    await ds.close();
  });

  test("native gathers (pread and io: 'mmap') give exactly the batches of plain JS reads", { skip: needsAddon('slimfit_gather') }, async () => {
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    for (const opts of [{}, { normalize: { scale: 1 / 255, shift: 0.25 } }, { normalize: { scale: 2, shift: 0 }, shift: 1, layout: 'flat' }, { labelCacheBytes: 0, oneHot: 10 }] as const) {
      const a = await epochIds(src, { batchSize: 100, workers: 0, seed: 8, native: false, ...opts });
      for (const [workers, io] of [[0, 'pread'], [2, 'pread'], [0, 'mmap'], [2, 'mmap']] as const) {
        const b = await epochIds(src, { batchSize: 100, workers, seed: 8, io, ...opts });
        assert.equal(b.loader.io, io);
        await b.loader.close();
        assert.equal(b.batches.length, a.batches.length);
        for (let i = 0; i < a.batches.length; i++) {
          assert.deepEqual(b.batches[i].x, a.batches[i].x, `x of batch ${i} (${JSON.stringify(opts)}, workers ${workers})`);
          assert.deepEqual(b.batches[i].y, a.batches[i].y);
          assert.deepEqual(b.batches[i].xShape, a.batches[i].xShape);
        }
      }
    }
    await ds.close();
  });

  test("io 'auto' maps small x files and reads larger ones with pread; both give the plain JS batches from a cold page cache", { skip: needsAddon('slimfit_gather') }, async () => {
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    const auto = createLoader(src, { workers: 0 });
    assert.equal(auto.io, 'mmap', 'a few kB of x files are mapped');
    await auto.close();
    assert.equal(createLoader(src, { workers: 0, io: 'auto', native: false }).io, 'pread', 'no addon: positioned reads');
    assert.equal(createLoader(src, { workers: 0, shuffle: 'block' }).io, 'pread', 'block shuffle reads windows');
    // The same parts claiming 65 MB x files in total: over the 64 MB bound, so pread (RSS stays independent of the store).
    const parts = (src as unknown as { parts: Array<{ x: { fileBytes?: number } }> }).parts;
    const big = { parts: parts.map((p) => ({ ...p, x: { ...p.x, fileBytes: Math.ceil((65 * 2 ** 20) / parts.length) } })) } as never;
    assert.equal(chooseIo(big, 'auto', true), 'pread');
    assert.equal(chooseIo(big, 'mmap', true), 'mmap');
    assert.equal(chooseIo(src as never, 'auto', false), 'pread');
    // pgather reads page-cache-only first and hints the rest of a batch once it meets a row that is not cached.
    const files = parts.map((p) => (p.x as unknown as { path: string }).path);
    const evict = () => py('import os,sys\nfor p in sys.argv[1:]:\n  fd=os.open(p,os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)', files);
    const want = await epochIds(src, { batchSize: 100, workers: 0, seed: 3, native: false, normalize: { scale: 1 / 255, shift: 0 } });
    await want.loader.close();
    for (const io of ['pread', 'mmap'] as const) {
      evict();
      const got = await epochIds(src, { batchSize: 100, workers: 1, seed: 3, io, normalize: { scale: 1 / 255, shift: 0 }, verifyChecksums: false });
      await got.loader.close();
      assert.equal(got.batches.length, want.batches.length);
      for (let i = 0; i < want.batches.length; i++) assert.deepEqual(got.batches[i].x, want.batches[i].x, `${io}: x of batch ${i} after eviction`);
    }
    await ds.close();
  });

  test('default workers: the main thread for a store io auto maps (labels in memory, no augmentation), else cores - 1', { skip: needsAddon('slimfit_gather') }, async () => {
    const cores = availableParallelism();
    const base = { io: 'mmap' as const, labelsCached: true, remote: false, heavyTransforms: false, cores };
    assert.equal(defaultWorkers(base), 0);
    for (const other of [{ io: 'pread' as const }, { labelsCached: false }, { remote: true }, { heavyTransforms: true }]) {
      assert.equal(defaultWorkers({ ...base, ...other }), Math.max(1, cores - 1), JSON.stringify(other));
    }
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    const cases: Array<[Opts, number]> = [
      [{}, 0], [{ io: 'mmap' }, Math.max(1, cores - 1)], [{ io: 'pread' }, Math.max(1, cores - 1)], [{ noise: 0.1 }, Math.max(1, cores - 1)],
      [{ shift: 1 }, Math.max(1, cores - 1)], [{ labelCacheBytes: 0 }, Math.max(1, cores - 1)], [{ workers: 2 }, 2],
    ];
    for (const [opts, want] of cases) {
      const l = createLoader(src, opts);
      assert.equal(l.workers, want, JSON.stringify(opts));
      await l.close();
    }
    await ds.close();
  });

  test('native batch ids: the addon\'s Feistel network gives permutation().at bit for bit; ranks read the same batches as plain JS', { skip: needsAddon('slimfit_gather') }, async () => {
    const addon = gatherAddon()!;
    for (const n of [1, 2, 3, 5, 2003, 65536, 65537, 2 ** 40 + 3, 2 ** 52]) for (const seed of [0, -5, 2 ** 40 + 1]) {
      const p = permutation(n, seed, 7);
      const start = Math.floor(n / 3), count = Math.min(70, n - start);
      const out = new Float64Array(count);
      addon.permute!(Uint32Array.from(p.feistel.keys), p.feistel.half, n, start, count, out);
      assert.deepEqual(Array.from(out), Array.from({ length: count }, (_, k) => p.at(start + k)), `n ${n}, seed ${seed}`);
    }
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    for (const rank of [0, 2]) {
      const a = await epochIds(src, { batchSize: 64, workers: 0, seed: 5, rank, worldSize: 3, native: false });
      const b = await epochIds(src, { batchSize: 64, workers: 1, seed: 5, rank, worldSize: 3 });
      await b.loader.close();
      assert.deepEqual(b.ids, a.ids, `rank ${rank} of 3`);
    }
    await ds.close();
  });

  test('backpressure: a slow consumer never has more than prefetch batches prepared; memoryBudget sizes prefetch', async () => {
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    const l = createLoader(src, { batchSize: 16, workers: 2, prefetch: 3, seed: 1 });
    let maxAhead = 0, k = 0;
    for await (const b of l) {
      void b;
      maxAhead = Math.max(maxAhead, l.ahead);
      if (++k % 20 === 0) await new Promise((r) => setTimeout(r, 30)); // slow consumer: readers must wait
      maxAhead = Math.max(maxAhead, l.ahead);
    }
    assert.equal(k, Math.ceil(2003 / 16));
    assert.equal(maxAhead, 3, `the ring fills up to prefetch=3 batches ahead and no further, saw ${maxAhead}`);
    await l.close();
    const budget = createLoader(src, { batchSize: 100, workers: 1, normalize: { scale: 1, shift: 0 }, memoryBudget: 100 * 64 * 4 * 5 + 100 * 4 * 5 });
    assert.equal(budget.prefetch, 5, 'memoryBudget / bytes per prepared batch');
    assert.ok(budget.ringBytes <= 100 * 64 * 4 * 5 + 100 * 4 * 5 + 64);
    await budget.close();
    await ds.close();
  });

  test('holdout: disjoint seeded train/val views covering the source; each view exactly once per epoch in every mode and worker count', async () => {
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    const { train, val } = holdout(src, 0.1, 3);
    assert.equal(val.samples, 200);
    assert.equal(train.samples, 1803);
    const seen = new Map<string, number[]>();
    for (const [name, view] of [['train', train], ['val', val]] as const) {
      for (const shuffle of ['global', 'block', 'shard', false] as const) {
        for (const workers of [0, 2]) {
          const { ids, batches, loader } = await epochIds(view, { batchSize: 64, shuffle, workers, seed: 1, shuffleWindow: 3000 });
          const flat = ids.flat();
          const what = `${name} ${shuffle} workers=${workers}`;
          assert.equal(flat.length, view.samples, what);
          assert.equal(new Set(flat).size, flat.length, `duplicates: ${what}`);
          for (const b of batches) { const bid = idsOf(b.x as Uint8Array, b.n); for (let k = 0; k < b.n; k++) assert.equal(b.y[k], bid[k] % 10, `label travels with its sample: ${what}`); }
          const sorted = [...flat].sort((a, b) => a - b);
          const before = seen.get(name);
          if (before) assert.deepEqual(sorted, before, `same members whatever the mode: ${what}`);
          else seen.set(name, sorted);
          await loader.close();
        }
      }
    }
    const all = [...seen.get('train')!, ...seen.get('val')!].sort((a, b) => a - b);
    assert.deepEqual(all, Array.from({ length: 2003 }, (_, i) => i), 'train and val views are disjoint and cover the source');
    // Held out at random, not the last samples: the val ids spread over the whole range, and another seed draws others.
    const v = seen.get('val')!;
    assert.ok(v[0] < 200 && v[v.length - 1] > 1800, `val ids ${v[0]}..${v[v.length - 1]}`);
    const other = (await epochIds(holdout(src, 0.1, 4).val, { batchSize: 500, shuffle: false, workers: 0 })).ids.flat();
    assert.ok(other.filter((i) => v.includes(i)).length < 60, 'another seed holds out other samples');
    // Balanced sampling inside a view draws only the view's own samples.
    const bal = (await epochIds(val, { batchSize: 50, balanced: true, workers: 0 })).ids.flat();
    assert.ok(bal.every((i) => v.includes(i)), 'balanced sampling stays inside the held-out view');
    assert.throws(() => holdout(src, 0.0001), (e: unknown) => isSlimfitError(e) && /leaves 0 for validation/.test((e as Error).message));
    assert.throws(() => holdout(src, 1.5), RangeError);
    await ds.close();
  });

  test('balanced sampling draws classes equally often', async () => {
    const dir = join(tmp.dir, 'skewed');
    await makeStore(dir, { n: 3000, label: (i) => (i < 2400 ? 0 : i < 2900 ? 1 : 2), classes: 3 });
    const ds = await openDataset(dir);
    const src = ds.split('train');
    const r = await epochIds(src, { batchSize: 100, workers: 0, balanced: true, seed: 1 });
    const counts = [0, 0, 0];
    for (const b of r.batches) for (const v of b.y) counts[v as number]++;
    assert.deepEqual(counts, [1000, 1000, 1000]);
    const r2 = await epochIds(src, { batchSize: 100, workers: 2, balanced: true, seed: 1 });
    await r2.loader.close();
    assert.deepEqual(r2.ids, r.ids, 'balanced order is the same with workers');
    const c2 = r.ids.flat().filter((i) => i >= 2900);
    assert.equal(new Set(c2).size, 100, 'the rare class: each of its 100 samples used (10 times each)');
    await ds.close();
  });

  test('release(): owned batches given back are detached at once and refill later batches; batches kept never change', async () => {
    const ds = await openDataset(stores[2003]);
    const src = ds.split('train');
    // Raw uint8 x (JS transform, recycled buffers zeroed first) and float32 x (the native gather writes every byte).
    for (const [normalize, workers] of [[false, 1], [{ scale: 1, shift: 0 }, 1], [{ scale: 1, shift: 0 }, 0]] as const) {
      const loader = createLoader(src, { batchSize: 50, workers, prefetch: 4, seed: 3, normalize });
      const kept: Array<{ b: Batch; x: number[]; y: number[] }> = [];
      for (let epoch = 0; epoch < 3; epoch++) {
        const seen: number[] = [];
        for await (const b of loader) {
          const ids = idsOf(b.x as ArrayLike<number>, b.n);
          seen.push(...ids);
          assert.deepEqual(Array.from(b.y as ArrayLike<number>), ids.map((i) => i % 10), `labels of batch ${b.index} (normalize ${JSON.stringify(normalize)})`);
          assert.equal(typeof b.release, 'function');
          if (b.index % 3 === 0) kept.push({ b, x: Array.from(b.x as ArrayLike<number>), y: Array.from(b.y as ArrayLike<number>) });
          else {
            b.release!();
            assert.equal(b.x.length, 0, 'released x is detached');
            assert.equal(b.y.length, 0, 'released y is detached');
            b.release!(); // again: nothing
          }
        }
        assert.deepEqual(seen.sort((a, b) => a - b), Array.from({ length: 2003 }, (_, i) => i), `epoch ${epoch}: every sample once`);
      }
      for (const k of kept) {
        assert.deepEqual(Array.from(k.b.x as ArrayLike<number>), k.x, `kept batch ${k.b.epoch}/${k.b.index} x unchanged`);
        assert.deepEqual(Array.from(k.b.y as ArrayLike<number>), k.y, `kept batch ${k.b.epoch}/${k.b.index} y unchanged`);
      }
      await loader.close();
    }
    // Lent batches have nothing to give back.
    for (const opts of [{ reuseBuffers: true, workers: 1 }, { reuseBuffers: true, workers: 0 }]) {
      const loader = createLoader(src, { batchSize: 500, ...opts });
      for await (const b of loader) { assert.equal(b.release, undefined, JSON.stringify(opts)); break; }
      await loader.close();
    }
    await ds.close();
  });
});

describe('loader over plain files', () => {
  const tmp = tempDir('slimfit-loader-files-');
  after(() => tmp.cleanup());

  test('fromNpy reads x/y .npy in place; stats normalization is refused with advice', async () => {
    const x = join(tmp.dir, 'x.npy'), y = join(tmp.dir, 'y.npy');
    await makeNpyPair(x, y, { n: 777 });
    const src = await fromNpy({ x, y });
    assert.equal(src.samples, 777);
    const { ids, loader } = await epochIds(src, { batchSize: 100, workers: 1 });
    await loader.close();
    assert.deepEqual(ids.flat().sort((a, b) => a - b), Array.from({ length: 777 }, (_, i) => i));
    assert.throws(() => createLoader(src, { normalize: 'stats' }), (e) => isSlimfitError(e) && /scale/.test((e as Error).message));
  });

  test('fromNpz reads stored members in place; compressed members are a clear error suggesting convert', async () => {
    const x = join(tmp.dir, 'x.npy'), y = join(tmp.dir, 'y.npy');
    await makeNpyPair(x, y, { n: 500 });
    const npz = join(tmp.dir, 'd.npz'), npzc = join(tmp.dir, 'c.npz');
    py(`import numpy as np, sys\nx=np.load(sys.argv[1]); y=np.load(sys.argv[2])\nnp.savez(sys.argv[3], images=x, labels=y, other=np.zeros(3))\nnp.savez_compressed(sys.argv[4], images=x, labels=y)`, [x, y, npz, npzc]);
    const src = await fromNpz(npz, { x: 'images', y: 'labels' });
    const { ids, batches, loader } = await epochIds(src, { batchSize: 64, workers: 0 });
    await loader.close();
    assert.deepEqual(ids.flat().sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i));
    for (const b of batches) { const bid = idsOf(b.x as Uint8Array, b.n); for (let k = 0; k < b.n; k++) assert.equal(b.y[k], bid[k] % 10); }
    await assert.rejects(fromNpz(npzc, { x: 'images', y: 'labels' }), (e) => isSlimfitError(e) && /compressed/.test((e as Error).message) && /slimfit convert/.test((e as Error).message));
    await assert.rejects(fromNpz(npz, { x: 'nope', y: 'labels' }), (e) => isSlimfitError(e) && /images, labels, other/.test((e as Error).message));
  });
});

test("the native uint8 -> float32 conversion (AVX-512, AVX2 and table paths) gives the JS bits for every byte and odd row lengths", { skip: needsAddon('slimfit_gather') }, async () => {
  const { execFileSync } = await import('node:child_process');
  const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'slimfit-conv-'));
  try {
    const rb = 37, rows = 300; // 37: not a multiple of 8 or 16, so every vector path also runs its scalar tail
    const data = Uint8Array.from({ length: rows * rb }, (_, i) => (i * 97 + (i >> 8)) & 255);
    writeFileSync(join(dir, 'x.bin'), data);
    // Loaded the way the loader loads it, so SLIMFIT_ISA must reach the addon (configure) for isa() to match.
    const script = `
      import { gatherAddon } from ${JSON.stringify(new URL('../src/loader/native.ts', import.meta.url).pathname)};
      import fs from 'node:fs';
      const a = gatherAddon();
      const fd = fs.openSync(${JSON.stringify(join(dir, 'x.bin'))}, 'r'), h = a.open(${JSON.stringify(join(dir, 'x.bin'))});
      const n = ${rows}, rb = ${rb}, order = Float64Array.from({ length: n }, (_, i) => (i * 7) % n), dest = Uint32Array.from({ length: n }, (_, i) => i);
      const out = [];
      for (const [A, B] of [[1 / 255, 0], [0.0123, -0.5], [2, 0.25]]) for (const f of ['gather', 'pgather']) {
        const o = new Float32Array(n * rb);
        if (a[f](f === 'gather' ? h : fd, 0, rb, order, dest, n, o, 1, A, B) !== 0) throw new Error(f + ' failed');
        out.push(Buffer.from(o.buffer).toString('base64'));
      }
      process.stdout.write(JSON.stringify({ isa: a.isa(), out }));`;
    const want: string[] = [];
    for (const [A, B] of [[1 / 255, 0], [0.0123, -0.5], [2, 0.25]]) {
      const o = new Float32Array(rows * rb);
      for (let i = 0; i < rows; i++) for (let e = 0; e < rb; e++) o[i * rb + e] = data[((i * 7) % rows) * rb + e] * A + B;
      want.push(Buffer.from(o.buffer).toString('base64'), Buffer.from(o.buffer).toString('base64'));
    }
    const best = gatherAddon()!.isa();
    for (const isa of ['', 'avx2', 'generic']) {
      const got = JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, SLIMFIT_ISA: isa }, encoding: 'utf8' })) as { isa: string; out: string[] };
      const rank = ['generic', 'avx2', 'avx512'];
      assert.equal(got.isa, rank[Math.min(rank.indexOf(best), rank.indexOf(isa || 'avx512'))], `SLIMFIT_ISA=${isa || '(best)'} picks its path`);
      assert.deepEqual(got.out, want, `SLIMFIT_ISA=${isa || '(best)'}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
