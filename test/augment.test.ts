// Augmentation in the loader: the same bytes for any worker count, each op against numpy/scipy or its definition,
// never on evaluation loaders, option and --augment errors, run.json and --resume, `show --augment`.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLoader, fromNpy } from '../src/loader/index.ts';
import type { AugmentOptions, Batch, DataSource, LoaderOptions } from '../src/loader/types.ts';
import { emptyDraw, formatAugment, inverseAffine, parseAugmentSpec, warpBilinear } from '../src/loader/augment.ts';
import { makeEvalLoader } from '../src/train/data.ts';
import { isSlimfitError } from '../src/core/errors.ts';
import { py, runCli, tempDir } from '../dev/helpers.ts';
import { makeStore } from './loader-fixtures.ts';

const tmp = tempDir('slimfit-augment-');
const N = 240, H = 14, W = 11, C = 3;
let src: DataSource;
/** The stored images (values 50..200: brightness/contrast below never clip, erasing is the only source of zeros). */
let images: Uint8Array;

before(async () => {
  py(`
import numpy as np, sys
rng = np.random.default_rng(7)
x = rng.integers(50, 201, size=(${N}, ${H}, ${W}, ${C}), dtype=np.uint8)
np.save(sys.argv[1], x); np.save(sys.argv[2], (np.arange(${N}) % 10).astype(np.uint8)); np.save(sys.argv[3], x.reshape(${N}, -1))
`, [join(tmp.dir, 'x.npy'), join(tmp.dir, 'y.npy'), join(tmp.dir, 'flat.npy')]);
  src = await fromNpy({ x: join(tmp.dir, 'x.npy'), y: join(tmp.dir, 'y.npy') });
  const all = await epoch({ batchSize: N, shuffle: false, workers: 0 });
  images = all[0].x as Uint8Array;
});
after(async () => { await src.close(); tmp.cleanup(); });

async function epoch(o: LoaderOptions, epochs = 1): Promise<Batch[]> {
  const l = createLoader(src, o);
  const out: Batch[] = [];
  try { for (let e = 0; e < epochs; e++) for await (const b of l) out.push(b); } finally { await l.close(); }
  return out;
}
const bytes = (bs: Batch[]) => Buffer.concat(bs.map((b) => Buffer.from(b.x.buffer, b.x.byteOffset, b.x.byteLength)));
const PER = H * W * C;
const ALL: AugmentOptions = { shift: 2, rotate: 20, scale: 0.15, shear: 8, noise: 0.05, erase: 0.5, flip: true, brightness: 0.1, contrast: 0.2 };

describe('augmentation', () => {
  test('every op at once: the same bytes for 0, 1 and 3 workers over two epochs; another seed or epoch draws differently', async () => {
    const o: LoaderOptions = { batchSize: 32, seed: 11, normalize: { scale: 1 / 255, shift: -0.5 }, augment: ALL };
    const w0 = bytes(await epoch({ ...o, workers: 0 }, 2));
    const w1 = bytes(await epoch({ ...o, workers: 1 }, 2));
    const w3 = bytes(await epoch({ ...o, workers: 3, prefetch: 6 }, 2));
    assert.ok(w0.equals(w1), '1 worker = main thread');
    assert.ok(w0.equals(w3), '3 workers = main thread');
    const block = { ...o, shuffle: 'block', shuffleWindow: 4000 } as const;
    assert.ok(bytes(await epoch({ ...block, workers: 0 })).equals(bytes(await epoch({ ...block, workers: 3 }))), 'block shuffle: 3 workers = main thread');
    // Stored order, so sample k sits at position k in both epochs: only the draws can differ.
    const inOrder = { ...o, shuffle: false, workers: 0 } as const;
    const [e1, e2] = [await epoch(inOrder, 2)].map((bs) => [bytes(bs.slice(0, bs.length / 2)), bytes(bs.slice(bs.length / 2))])[0];
    assert.ok(!e1.equals(e2), 'epoch 2 draws differ from epoch 1');
    const other = bytes(await epoch({ ...inOrder, seed: 12 }, 1));
    assert.ok(!other.equals(e1), 'seed 12 draws differ from seed 11');
    const plain = bytes(await epoch({ ...inOrder, augment: undefined }, 1));
    assert.ok(!plain.equals(e1), 'augmentation changes the samples');
  });

  test('rotation by 90 degrees equals np.rot90, and a random affine draw equals scipy.ndimage.affine_transform (order 1, zero fill)', () => {
    const S = 9;
    const img = Float32Array.from({ length: S * S }, (_, i) => (i * 37) % 101);
    const out = new Float32Array(S * S);
    warpBilinear(img, out, 0, S, S, 1, inverseAffine({ ...emptyDraw(), angle: Math.PI / 2 }, S, S));
    const rot = JSON.parse(py('import numpy as np, json, sys; a = np.array(json.loads(sys.argv[1])).reshape(9, 9); print(json.dumps(np.rot90(a).ravel().tolist()))', [JSON.stringify([...img])])) as number[];
    for (let i = 0; i < S * S; i++) assert.ok(Math.abs(out[i] - rot[i]) < 1e-4, `pixel ${i}: ${out[i]} vs ${rot[i]}`);

    // Forward map about the centre, built here from the documented definition: translate . rotate . shear . zoom . flip.
    const d = { ...emptyDraw(), angle: 0.35, zoom: 1.12, shearAngle: -0.2, flip: true, dx: 2, dy: -1 };
    const x = Float32Array.from({ length: PER }, (_, i) => images[i]);
    const got = new Float32Array(PER);
    warpBilinear(x, got, 0, H, W, C, inverseAffine(d, H, W));
    const want = JSON.parse(py(`
import numpy as np, json, sys
from scipy.ndimage import affine_transform
H, W, C = ${H}, ${W}, ${C}
a = np.array(json.loads(sys.argv[1]), dtype=np.float64).reshape(H, W, C)
t, z, s, f = 0.35, 1.12, np.tan(-0.2), -1.0
R = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])   # (x right, y down): counterclockwise on screen
A = R @ np.array([[1, s], [0, 1]]) @ np.diag([z, z]) @ np.diag([f, 1])
Ai = np.linalg.inv(A)
P = np.array([[0, 1], [1, 0]])                                     # (x, y) <-> (row, col)
M = P @ Ai @ P
c = np.array([(H - 1) / 2, (W - 1) / 2]); tr = np.array([-1, 2])   # (dy, dx)
off = c - M @ (c + tr)
out = np.stack([affine_transform(a[..., k], M, offset=off, order=1, mode='grid-constant', cval=0) for k in range(C)], -1)
print(json.dumps(out.ravel().tolist()))
`, [JSON.stringify([...x])])) as number[];
    let worst = 0;
    for (let i = 0; i < PER; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    assert.ok(worst < 1e-3, `max difference to scipy ${worst}`);
    // One channel (its own kernel): channel 1 alone gives scipy's channel 1.
    const g1 = new Float32Array(H * W);
    warpBilinear(Float32Array.from({ length: H * W }, (_, p) => x[p * C + 1]), g1, 0, H, W, 1, inverseAffine(d, H, W));
    let worst1 = 0;
    for (let p = 0; p < H * W; p++) worst1 = Math.max(worst1, Math.abs(g1[p] - want[p * C + 1]));
    assert.ok(worst1 < 1e-3, `one channel: max difference to scipy ${worst1}`);
  });

  test('flip mirrors left-right about half the time; erase zeroes one rectangle; brightness adds and contrast scales about the mean', async () => {
    const inOrder = { batchSize: N, shuffle: false, workers: 0, seed: 3 } as const;
    const img = (k: number) => images.subarray(k * PER, (k + 1) * PER);
    const at = (a: ArrayLike<number>, k: number, i: number, j: number, c: number) => a[k * PER + (i * W + j) * C + c];

    const fl = (await epoch({ ...inOrder, augment: { flip: true } }))[0];
    assert.ok(fl.x instanceof Uint8Array, 'flip alone keeps the stored dtype');
    let flipped = 0;
    for (let k = 0; k < N; k++) {
      const same = Buffer.from(img(k)).equals(Buffer.from((fl.x as Uint8Array).subarray(k * PER, (k + 1) * PER)));
      let mirrored = true;
      for (let i = 0; i < H && mirrored; i++) for (let j = 0; j < W; j++) for (let c = 0; c < C; c++) if (at(fl.x, k, i, j, c) !== at(images, k, i, W - 1 - j, c)) mirrored = false;
      assert.ok(same !== mirrored, `sample ${k} is either unchanged or mirrored`);
      if (mirrored) flipped++;
    }
    assert.ok(flipped > N * 0.35 && flipped < N * 0.65, `${flipped} of ${N} flipped`);

    const er = (await epoch({ ...inOrder, augment: { erase: 1 } }))[0].x as Uint8Array;
    for (let k = 0; k < N; k++) {
      let t = H, b = -1, l = W, r = -1;
      for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) if (at(er, k, i, j, 0) === 0) { t = Math.min(t, i); b = Math.max(b, i); l = Math.min(l, j); r = Math.max(r, j); }
      assert.ok(b >= t, `sample ${k} has an erased rectangle`);
      const area = (b - t + 1) * (r - l + 1);
      assert.ok(area >= 1 && area <= 0.4 * H * W, `sample ${k}: area ${area}`);
      for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) for (let c = 0; c < C; c++) {
        const inside = i >= t && i <= b && j >= l && j <= r;
        assert.equal(at(er, k, i, j, c), inside ? 0 : at(images, k, i, j, c), `sample ${k} (${i}, ${j}, ${c})`);
      }
    }

    const br = (await epoch({ ...inOrder, augment: { brightness: 0.1 } }))[0].x as Float32Array;
    const deltas = new Set<number>();
    for (let k = 0; k < N; k++) {
      const dlt = br[k * PER] - images[k * PER];
      assert.ok(Math.abs(dlt) <= 25.5 + 1e-4, `delta ${dlt} within 0.1 x 255`);
      for (let e = 0; e < PER; e++) assert.ok(Math.abs(br[k * PER + e] - images[k * PER + e] - dlt) < 1e-3, `sample ${k}: one delta for all pixels`);
      deltas.add(Math.round(dlt * 1000));
    }
    assert.ok(deltas.size > N / 2, 'deltas differ between samples');

    const ct = (await epoch({ ...inOrder, augment: { contrast: 0.2 } }))[0].x as Float32Array;
    for (let k = 0; k < N; k++) {
      let f = NaN;
      for (let c = 0; c < C; c++) {
        let m = 0;
        for (let p = 0; p < H * W; p++) m += images[k * PER + p * C + c];
        m /= H * W;
        for (let p = 0; p < H * W; p++) {
          const e = k * PER + p * C + c, dev = images[e] - m;
          if (Math.abs(dev) < 10) continue;
          const g = (ct[e] - m) / dev;
          if (Number.isNaN(f)) f = g;
          assert.ok(Math.abs(g - f) < 1e-3, `sample ${k}: one factor per sample (${g} vs ${f})`);
        }
      }
      assert.ok(f >= 0.8 - 1e-6 && f <= 1.2 + 1e-6, `factor ${f} in [0.8, 1.2]`);
    }
  });

  test('evaluation loaders never augment; shift and noise are the same settings as augment.shift and augment.noise', async () => {
    const plain = bytes(await collect(makeEvalLoader(src, 10, { normalize: { scale: 1 / 255, shift: 0 } })));
    const asked = bytes(await collect(makeEvalLoader(src, 10, { normalize: { scale: 1 / 255, shift: 0 }, augment: ALL, shift: 2, noise: 0.1 })));
    assert.ok(plain.equals(asked), 'the evaluation loader ignores augmentation');
    const base = { batchSize: 50, seed: 2, workers: 0, normalize: { scale: 1, shift: 0 } } as const;
    assert.ok(bytes(await epoch({ ...base, shift: 2, noise: 0.3 })).equals(bytes(await epoch({ ...base, augment: { shift: 2, noise: 0.3 } }))));
  });

  test('bad augment options are one SlimfitError naming the key', async () => {
    const cases: Array<[LoaderOptions, RegExp]> = [
      [{ augment: { rotat: 10 } as AugmentOptions }, /augment has no option 'rotat'; valid keys: shift, rotate/],
      [{ augment: { scale: 1 } }, /augment\.scale must be a number from 0 up to \(not including\) 1, got 1/],
      [{ augment: { shift: 1.5 } }, /augment\.shift must be a whole number/],
      [{ augment: { flip: 1 as unknown as boolean } }, /augment\.flip must be true or false/],
      [{ augment: 'rotate=10' as unknown as AugmentOptions }, /option augment must be an object/],
      [{ shift: 1, augment: { shift: 2 } }, /option shift 1 and augment\.shift 2 disagree/],
    ];
    for (const [o, re] of cases) assert.throws(() => createLoader(src, o), (e) => isSlimfitError(e) && re.test((e as Error).message), JSON.stringify(o));
    const flat = await fromNpy({ x: join(tmp.dir, 'flat.npy'), y: join(tmp.dir, 'y.npy') });
    try {
      assert.throws(() => createLoader(flat, { augment: { rotate: 5 } }), (e) => isSlimfitError(e) && /need image-shaped samples \[H, W\] or \[H, W, C\], but x samples have shape \[\d+\]/.test((e as Error).message));
      const l = createLoader(flat, { augment: { brightness: 0.1, noise: 0.1 }, workers: 0 }); // value ops work on any shape
      await l.close();
    } finally { await flat.close(); }
    assert.deepEqual(parseAugmentSpec(' rotate=10, flip ,scale=0.1'), { rotate: 10, flip: true, scale: 0.1 });
    assert.equal(formatAugment(parseAugmentSpec('flip,scale=0.1,rotate=10')), 'rotate=10,scale=0.1,flip');
    for (const s of ['rotate', 'rotate=', 'rotate=x', 'rotate=200', 'shift=-1', 'shear=90', 'erase=1.5', 'flip=maybe', 'rotate=1,rotate=2', 'zoom=0.1']) {
      assert.throws(() => parseAugmentSpec(s), (e) => isSlimfitError(e) && (e as Error).name === 'UsageError', s);
    }
  });

  test('CLI: bad --augment specs exit 2 with one sentence; --augment is saved in run.json and kept on --resume; show --augment draws a grid', async () => {
    const store = join(tmp.dir, 'store'), run = join(tmp.dir, 'run'), png = join(tmp.dir, 'aug.png');
    await makeStore(store, { n: 300, h: 8, w: 8 });
    const bad = await Promise.all([
      runCli(['train', store, '--augment', 'rotate=10,zoom=0.1']),
      runCli(['train', store, '--augment', 'scale=1.5']),
      runCli(['train', store, '--shift', '1', '--augment', 'shift=2']),
      runCli(['show', store, '--augment', 'flip=yes']),
    ]);
    const want = [/unknown key 'zoom' \(valid keys: shift, rotate, scale, shear, noise, erase, flip, brightness, contrast;/, /scale must be a number from 0 up to \(not including\) 1, got '1\.5'/, /--shift 1 and --augment shift=2 disagree/, /flip takes no value/];
    bad.forEach((r, i) => {
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('slimfit-peak-rss'));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], want[i]);
    });
    const [t1, shown] = await Promise.all([
      runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--augment', 'flip,rotate=10', '--val-fraction', '0', '--no-test', '--out', run]),
      runCli(['show', store, '--augment', 'rotate=10,erase=0.5', '-n', '16', '--seed', '1', '--out', png]),
    ]);
    assert.equal(t1.code, 0, t1.stderr);
    assert.equal((JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as { augment: string }).augment, 'rotate=10,flip');
    assert.match(t1.stderr, /augment rotate=10,flip/);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /wrote 2 random samples \(seed \d+; [^)]*\) of 'train', each as stored and then in 7 draws of --augment rotate=10,erase=0\.5, to \//);
    assert.ok(existsSync(png) && readFileSync(png).subarray(1, 4).toString() === 'PNG');
    const t2 = await runCli(['train', '--resume', run, '--epochs', '2']);
    assert.equal(t2.code, 0, t2.stderr);
    assert.match(t2.stderr, /training mlp .*augment rotate=10,flip/);
    assert.match(readFileSync(join(run, 'report.md'), 'utf8'), /augment rotate=10,flip/);
    // A run with --shift resumed with --augment shift=...: the new augmentation replaces the old one, shift included.
    const run2 = join(tmp.dir, 'aug-shift-run');
    assert.equal((await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--shift', '2', '--val-fraction', '0', '--no-test', '--out', run2])).code, 0);
    const t3 = await runCli(['train', '--resume', run2, '--epochs', '2', '--augment', 'shift=3,rotate=10']);
    assert.equal(t3.code, 0, t3.stderr);
    assert.match(t3.stderr, /--augment replaces the run's augmentation, its --shift 2 included/);
    const cfg3 = JSON.parse(readFileSync(join(run2, 'run.json'), 'utf8')) as { shift: number; augment: string };
    assert.equal(cfg3.shift, 0);
    assert.match(cfg3.augment, /shift=3/);
  });
});

async function collect(l: { [Symbol.asyncIterator](): AsyncIterator<Batch>; close(): Promise<void> }): Promise<Batch[]> {
  const out: Batch[] = [];
  try { for await (const b of l as AsyncIterable<Batch>) out.push({ ...b, x: b.x.slice() }); } finally { await l.close(); }
  return out;
}
