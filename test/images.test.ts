// Image trees and archives: exact samples vs MNIST pixels, skip list, --strict, worker-count determinism, channels,
// resize, and flat peak RSS when the tree grows 10x.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { encode } from 'fast-png';
import { openImageArchive } from '../src/formats/archive.ts';
import { imageTreeInput, openImageTree } from '../src/formats/image-tree.ts';
import { IMAGE_EXTENSIONS } from '../src/formats/images.ts';
import { decodeBatch, pack } from '../src/formats/image-pool.ts';
import { decodeImage } from '../src/formats/images.ts';
import { pngAddon } from '../src/formats/png-native.ts';
import { hashSamples } from '../src/core/hash64.ts';
import { countBytes } from '../src/core/histogram.ts';
import { openMessySource } from '../src/formats/messy.ts';
import type { SampleSource } from '../src/core/source.ts';
import { needsAddon, py, runCli, RSS_GROWTH_LIMIT, tempDir, ROOT, disableAlso } from '../dev/helpers.ts';
import { type NotMnistFixture, packArchive, type SplitFixture, writeNotMnist, mnistPixels, grayPng } from './image-fixture.ts';

/** Read a whole source into memory (fixtures are small). */
async function drain(src: SampleSource): Promise<{ x: Uint8Array; y: number[]; n: number }> {
  const xs: Uint8Array[] = [];
  const y: number[] = [];
  let n = 0;
  for await (const b of src.batches()) {
    xs.push(b.x.slice());
    for (let i = 0; i < b.n; i++) y.push(b.y[i]);
    n += b.n;
  }
  return { x: Buffer.concat(xs), y, n };
}

function checkSplit(got: { x: Uint8Array; y: number[]; n: number }, want: SplitFixture): void {
  assert.equal(got.n, want.samples.length);
  assert.deepEqual(got.y, want.samples.map((s) => s.label));
  want.samples.forEach((s, i) => {
    const px = got.x.subarray(i * 784, (i + 1) * 784);
    assert.ok(Buffer.from(px).equals(Buffer.from(s.pixels)), `pixels of sample ${i} (${s.path}) differ`);
  });
}

function checkSkipped(src: SampleSource, want: SplitFixture, prefix = ''): void {
  const got = [...(src.skipped ?? [])].sort((a, b) => (a.path < b.path ? -1 : 1));
  assert.equal(got.length, want.skipped.length, JSON.stringify(got));
  want.skipped.forEach((w, i) => {
    assert.equal(got[i].path, prefix + w.path);
    assert.match(got[i].reason, w.reason);
  });
}

/** A PNG with row filters 0-4 in turn (PNG spec section 9), its zlib stream split over three IDAT chunks. */
function filteredPng(px: Uint8Array, w: number, h: number, c: number): Uint8Array {
  const stride = w * c;
  const raw = new Uint8Array((stride + 1) * h);
  const paeth = (a: number, b: number, d: number) => { const p = a + b - d, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - d); return pa <= pb && pa <= pc ? a : pb <= pc ? b : d; };
  for (let y = 0; y < h; y++) {
    const f = y % 5;
    raw[y * (stride + 1)] = f;
    for (let i = 0; i < stride; i++) {
      const x = px[y * stride + i], a = i >= c ? px[y * stride + i - c] : 0, b = y > 0 ? px[(y - 1) * stride + i] : 0, d = y > 0 && i >= c ? px[(y - 1) * stride + i - c] : 0;
      const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : paeth(a, b, d);
      raw[y * (stride + 1) + 1 + i] = (x - pred) & 255;
    }
  }
  const z = deflateSync(raw);
  const chunk = (type: string, body: Uint8Array) => {
    const out = Buffer.alloc(12 + body.length);
    out.writeUInt32BE(body.length, 0);
    out.write(type, 4, 'latin1');
    out.set(body, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = [0, 0, 4, 2, 6][c];
  const third = Math.ceil(z.length / 3);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('tEXt', Buffer.from('Comment\0filters')),
    chunk('IDAT', z.subarray(0, third)), chunk('IDAT', z.subarray(third, 2 * third)), chunk('IDAT', z.subarray(2 * third)), chunk('IEND', new Uint8Array(0))]);
}

describe('image trees and archives', () => {
  let tmp: { dir: string; cleanup: () => void };
  let fx: NotMnistFixture;
  before(() => {
    tmp = tempDir();
    fx = writeNotMnist(join(tmp.dir, 'notmnist'), 20);
  });
  after(() => tmp.cleanup());

  it('reads a folder tree in sorted class/file order, pixel-exact, with bad files skipped and listed', async () => {
    const src = await openImageTree(fx.train.dir, { workers: 1 });
    assert.deepEqual(src.classNames, fx.classes);
    assert.deepEqual(src.x, { dtype: 'uint8', shape: [28, 28, 1] });
    assert.deepEqual(src.y, { dtype: 'uint8', shape: [] });
    checkSplit(await drain(src), fx.train);
    checkSkipped(src, fx.train, fx.train.dir + '/');
    // The same via the detector, and the test split too.
    const test = await openMessySource(fx.test.dir, { workers: 1 });
    assert.ok(test);
    checkSplit(await drain(test), fx.test);
    assert.equal(test.skipped?.length, 0);
  });

  it('gives identical output for 0, 1 and 2 workers, native decode threads or worker threads, and any batch size', async () => {
    const outs: Array<{ x: Uint8Array; y: number[]; hashes: number[]; counts: number[]; skipped: string[] }> = [];
    const kinds = pngAddon() ? ['native', 'threads'] : ['threads'];
    for (const kind of kinds) {
      for (const [workers, batchFiles] of [[0, 256], [1, 7], [2, 3]] as const) {
        const src = await openImageTree(fx.train.dir, { workers, batchFiles, nativeThreads: kind === 'native' });
        const xs: Uint8Array[] = [], y: number[] = [], hashes: number[] = [], counts = new Array<number>(256).fill(0);
        for await (const b of src.batches()) {
          xs.push(b.x.slice());
          for (let i = 0; i < b.n; i++) y.push(b.y[i]);
          hashes.push(...(b.hashes ?? []));
          b.counts?.forEach((v, i) => { counts[i] += v; });
        }
        outs.push({ x: Buffer.concat(xs), y, hashes, counts, skipped: (src.skipped ?? []).map((s) => `${s.path}: ${s.reason}`) });
        assert.equal(src.skipped?.length, 3);
      }
    }
    const want = outs[0];
    assert.deepEqual(want.hashes, [...hashSamples(want.x, 28 * 28, want.y.length)]);
    const c = new Float64Array(256);
    countBytes(want.x, 1, c);
    assert.deepEqual(want.counts, [...c]);
    for (const o of outs.slice(1)) {
      assert.ok(Buffer.from(o.x).equals(Buffer.from(want.x)));
      assert.deepEqual(o.y, want.y);
      assert.deepEqual(o.hashes, want.hashes);
      assert.deepEqual(o.counts, want.counts);
      assert.deepEqual(o.skipped, want.skipped);
    }
  });

  it('labels() matches the labels of batches(), before and after a full pass', async () => {
    const src = await openImageTree(fx.train.dir, { workers: 1 });
    const viaLabels = async () => { const out: number[] = []; for await (const l of src.labels!()) out.push(...Array.from(l)); return out; };
    const before1 = await viaLabels();
    const d = await drain(src);
    const after1 = await viaLabels();
    assert.deepEqual(before1, d.y);
    assert.deepEqual(after1, d.y);
  });

  for (const ext of ['.tar.gz', '.tar', '.zip']) {
    it(`reads the same tree from a ${ext} as a stream`, async () => {
      const out = join(tmp.dir, `train${ext}`);
      packArchive(fx.train.dir, out, 'notMNIST_small');
      const src = await openMessySource(out, { workers: 1 });
      assert.ok(src);
      assert.deepEqual(src.classNames, fx.classes);
      checkSplit(await drain(src), fx.train);
      checkSkipped(src, fx.train, 'notMNIST_small/');
      // A second pass gives the same again (skip list is reset, not doubled).
      const again = await drain(src);
      assert.equal(again.n, fx.train.samples.length);
      assert.equal(src.skipped?.length, 3);
      // Progress: how far into the archive a pass got (a zip's last member ends before its central directory).
      const size = statSync(out).size;
      if (ext === '.zip') assert.ok(src.bytesRead! > 0.5 * size && src.bytesRead! < size, `zip read to ${src.bytesRead} of ${size}`);
      else assert.equal(src.bytesRead, size);
    });
  }

  it('--strict makes the first bad file fatal, naming it', async () => {
    const src = await openImageTree(fx.train.dir, { workers: 1, strict: true });
    await assert.rejects(drain(src), /A\/zero\.png: empty file/);
    const tgz = join(tmp.dir, 'strict.tar.gz');
    packArchive(fx.train.dir, tgz, 'root');
    const a = await openImageArchive(tgz, { workers: 1, strict: true });
    await assert.rejects(drain(a!), /root\/A\/zero\.png: empty file.*--strict/);
  });

  it('a truncated .tar.gz is a clear error naming the archive', async () => {
    const tgz = join(tmp.dir, 'full.tar.gz');
    packArchive(fx.train.dir, tgz, 'root');
    const bytes = readFileSync(tgz);
    const cut = join(tmp.dir, 'cut.tar.gz');
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await assert.rejects(openImageArchive(cut, { workers: 0 }), (e: Error) => e.name === 'SlimfitError' && e.message.includes('cut.tar.gz') && /truncated|corrupt/.test(e.message));
  });

  it('handles channels: RGB kept, --grayscale to luma, mixed gray/RGB converted to the first image, wrong size skipped, --resize', async () => {
    const root = join(tmp.dir, 'rgb');
    const px = mnistPixels();
    mkdirSync(join(root, 'cat'), { recursive: true });
    mkdirSync(join(root, 'dog'), { recursive: true });
    const rgb = new Uint8Array(28 * 28 * 3);
    const g = px.image(7);
    for (let i = 0; i < 784; i++) { rgb[3 * i] = g[i]; rgb[3 * i + 1] = 255 - g[i]; rgb[3 * i + 2] = (g[i] * 7) & 255; }
    writeFileSync(join(root, 'cat', 'a.png'), encode({ width: 28, height: 28, data: rgb, channels: 3, depth: 8 }));
    writeFileSync(join(root, 'dog', 'b.png'), grayPng(g)); // gray among RGB: replicated to 3 channels
    writeFileSync(join(root, 'dog', 'c.png'), grayPng(new Uint8Array(14 * 14).fill(9), 14, 14)); // wrong size
    const src = await openImageTree(root, { workers: 0 });
    assert.deepEqual(src.x.shape, [28, 28, 3]);
    const d = await drain(src);
    assert.equal(d.n, 2);
    assert.ok(Buffer.from(d.x.subarray(0, 2352)).equals(Buffer.from(rgb)));
    for (let i = 0; i < 784; i++) assert.deepEqual([...d.x.subarray(2352 + 3 * i, 2352 + 3 * i + 3)], [g[i], g[i], g[i]]);
    assert.equal(src.skipped?.length, 1);
    assert.match(src.skipped![0].reason, /wrong size 14x14, expected 28x28/);

    const gray = await openImageTree(root, { workers: 0, grayscale: true });
    assert.deepEqual(gray.x.shape, [28, 28, 1]);
    const gd = await drain(gray);
    for (let i = 0; i < 784; i++) {
      const want = 0.2126 * rgb[3 * i] + 0.7152 * rgb[3 * i + 1] + 0.0722 * rgb[3 * i + 2];
      assert.ok(Math.abs(gd.x[i] - want) <= 1, `luma of pixel ${i}: ${gd.x[i]} vs ${want}`);
    }
    assert.ok(Buffer.from(gd.x.subarray(784, 1568)).equals(Buffer.from(g)));

    const small = await openImageTree(root, { workers: 0, grayscale: true, resize: { width: 16, height: 12 } });
    assert.deepEqual(small.x.shape, [12, 16, 1]);
    const sd = await drain(small);
    assert.equal(sd.n, 3); // nothing is the wrong size once resized
    assert.ok(sd.x.subarray(2 * 192).every((v) => v === 9)); // a constant image stays constant under bilinear resize
  });

  it('reads BMP (exact) and JPEG (lossy) files; RGBA BMP first fixes 4 channels, the RGB JPEG gets alpha 255', async () => {
    const { Transformer } = await import('@napi-rs/image');
    const root = join(tmp.dir, 'formats');
    mkdirSync(join(root, 'a'), { recursive: true });
    mkdirSync(join(root, 'b'), { recursive: true });
    const rgba = new Uint8Array(28 * 28 * 4);
    for (let i = 0; i < 784; i++) { rgba[4 * i] = i % 256; rgba[4 * i + 1] = (i * 3) % 256; rgba[4 * i + 2] = (i * 7) % 256; rgba[4 * i + 3] = 255; }
    writeFileSync(join(root, 'a', 'x.bmp'), Transformer.fromRgbaPixels(rgba, 28, 28).bmpSync());
    const smooth = new Uint8Array(28 * 28 * 4);
    for (let i = 0; i < 784; i++) { const v = 60 + (i % 28) * 4; smooth[4 * i] = v; smooth[4 * i + 1] = v; smooth[4 * i + 2] = 255 - v; smooth[4 * i + 3] = 255; }
    writeFileSync(join(root, 'b', 'y.JPG'), Transformer.fromRgbaPixels(smooth, 28, 28).jpegSync(100));
    const src = await openImageTree(root, { workers: 1 });
    assert.deepEqual(src.x.shape, [28, 28, 4]);
    const d = await drain(src);
    assert.equal(d.n, 2);
    assert.ok(Buffer.from(d.x.subarray(0, 3136)).equals(Buffer.from(rgba)));
    let err = 0;
    for (let i = 0; i < 3136; i++) err = Math.max(err, Math.abs(d.x[3136 + i] - smooth[i]));
    assert.ok(err <= 8, `JPEG q100 max error ${err}`);
    assert.deepEqual(d.y, [0, 1]);
  });

  it('the native PNG path gives the general decoder\'s pixels, hands back what it does not handle, and reads files in bounded chunks', { skip: needsAddon('slimfit_png') }, async () => {
    const addon = pngAddon()!;
    const g = mnistPixels().image(3);
    const plane = (c: number) => Uint8Array.from({ length: 784 * c }, (_, i) => (c === 1 ? g[i] : (g[Math.floor(i / c)] * (i % c + 1) * 37) & 255));
    const files: Array<{ name: string; bytes: Uint8Array; c: number; native: boolean }> = [];
    for (const c of [1, 2, 3, 4]) files.push({ name: `8-bit ${c}ch`, bytes: encode({ width: 28, height: 28, data: plane(c), channels: c, depth: 8 }), c, native: true });
    files.push({ name: '16-bit gray', bytes: encode({ width: 28, height: 28, data: Uint16Array.from(g, (v) => v * 257), channels: 1, depth: 16 }), c: 1, native: false });
    files.push({ name: 'wrong size', bytes: grayPng(g.subarray(0, 27 * 28), 27, 28), c: 1, native: false });
    const good = grayPng(g);
    files.push({ name: 'truncated', bytes: good.subarray(0, Math.floor(good.length / 2)), c: 1, native: false });
    const bad = good.slice();
    bad[60] ^= 0xff; // inside IDAT: the CRC no longer matches
    files.push({ name: 'bad CRC', bytes: bad, c: 1, native: false });
    files.push({ name: 'not a PNG', bytes: new TextEncoder().encode('hello, this is text named .png'), c: 1, native: false });
    // Every row filter (None, Sub, Up, Average, Paeth) on random pixels, split over several IDAT chunks.
    for (const c of [1, 2, 3, 4]) {
      const px = Uint8Array.from({ length: 784 * c }, () => Math.floor(Math.random() * 256));
      files.push({ name: `all filters ${c}ch`, bytes: filteredPng(px, 28, 28, c), c, native: true });
    }
    for (const c of [1, 3, 4]) {
      const target = { width: 28, height: 28, channels: c };
      const batch = pack(files.map((f) => f.bytes));
      const out = new Uint8Array(files.length * 784 * c);
      const status = new Uint8Array(files.length);
      addon.decode(batch.data, batch.offsets, 28, 28, c, out, status);
      for (let i = 0; i < files.length; i++) {
        const f = files[i];
        const ref = await decodeImage(f.bytes, {}, target);
        if (status[i] === 0) {
          assert.ok(ref.ok, `${f.name} as ${c} channels: native decoded a file the general decoder rejects (${ref.ok ? '' : ref.reason})`);
          assert.ok(Buffer.from(out.subarray(i * 784 * c, (i + 1) * 784 * c)).equals(Buffer.from(ref.pixels)), `${f.name} as ${c} channels: pixels differ`);
        }
        assert.equal(status[i] === 0, f.native && f.c === c, `${f.name} as ${c} channels: native status ${status[i]}`);
      }
      // Through decodeBatch (native + fallback together): same pixels and reasons as decodeImage file by file.
      const d = await decodeBatch(batch, {}, target);
      const want: Uint8Array[] = [];
      for (let i = 0; i < files.length; i++) {
        const ref = await decodeImage(files[i].bytes, {}, target);
        assert.equal(d.reasons[i], ref.ok ? null : ref.reason, files[i].name);
        if (ref.ok) want.push(ref.pixels);
      }
      assert.ok(Buffer.from(d.x).equals(Buffer.concat(want)), `decodeBatch pixels as ${c} channels`);
    }
    // digest: the same 64-bit hashes as the JS hash64 (the duplicate index mixes both) and the same value counts.
    for (const [sb, c] of [[784, 1], [1, 1], [2, 2], [3, 3], [5, 1], [7, 1], [2352, 3], [3136, 4], [785, 1]]) {
      const n = 9;
      const x = Uint8Array.from({ length: sb * n }, () => Math.floor(Math.random() * 256));
      x.fill(0, 0, Math.min(x.length, 100)); // runs of one value too
      const hashes = new Uint32Array(2 * n), counts = new Float64Array(256 * c);
      addon.digest(x, sb, n, c, hashes, counts);
      assert.deepEqual([...hashes], [...hashSamples(x, sb, n)], `hashes of ${n} samples of ${sb} bytes`);
      const want = new Float64Array(256 * c);
      countBytes(x, c, want);
      assert.deepEqual([...counts], [...want], `counts, ${c} channel(s)`);
    }
    // readFiles stops after ~maxTotal bytes (at least one file) and reports missing files by errno.
    const dir = join(tmp.dir, 'readfiles');
    mkdirSync(dir, { recursive: true });
    const paths = [0, 1, 2, 3].map((i) => join(dir, `f${i}.bin`));
    paths.forEach((p, i) => writeFileSync(p, new Uint8Array(1000).fill(i + 1)));
    paths.splice(1, 0, join(dir, 'missing.png'));
    const r = addon.readFiles(paths.join('\0'), paths.length, 1 << 20, 2500);
    assert.equal(r.read, 4); // f0 (1000), missing (0), f1 (2000), f2 (3000 >= 2500: stop)
    assert.equal(r.errors[1], 2); // ENOENT
    assert.deepEqual([...r.offsets.subarray(0, 5)], [0, 1000, 1000, 2000, 3000]);
    assert.ok(r.data.subarray(2000, 3000).every((v) => v === 3));
    const none = addon.readFiles(paths.join('\0'), paths.length, 500, 1);
    assert.equal(none.read, 5); // nothing was held, so it went on to the end
    assert.deepEqual([...none.errors], [-1, 2, -1, -1, -1]); // above maxBytes: not read
    assert.equal(none.data.length, 0);
    // A count beyond the paths given is refused, not walked past the end of the string.
    assert.throws(() => addon.readFiles(paths.slice(0, 2).join('\0'), 3, 1 << 20, 1 << 20), /fewer paths than count/);
    // Into a caller's buffer: a file that exactly fills the room is read; the next one is left for the next call.
    const three = paths.filter((p) => !p.includes('missing'));
    const into = new ArrayBuffer(2000);
    const r2 = addon.readFiles(three.join('\0'), three.length, 1 << 20, 1 << 20, into);
    assert.equal(r2.read, 2);
    assert.equal(r2.data.buffer, into);
    assert.deepEqual([...r2.errors.subarray(0, 2)], [0, 0]);
    assert.ok(r2.data.subarray(0, 1000).every((v) => v === 1) && r2.data.subarray(1000, 2000).every((v) => v === 2));
    // A first file bigger than the buffer gets memory of its own, and reading goes on after it.
    const r3 = addon.readFiles(three.join('\0'), three.length, 1 << 20, 1 << 20, new ArrayBuffer(500));
    assert.equal(r3.read, 4);
    assert.deepEqual([...r3.offsets], [0, 1000, 2000, 3000, 4000]);
    assert.ok([1, 2, 3, 4].every((v, i) => r3.data.subarray(1000 * i, 1000 * (i + 1)).every((b) => b === v)));
    // A short read ends a file (no second read for end of file): sizes around every room boundary come back whole.
    const sizes = [0, 1, 999, 1000, 1001, 4095, 4096, 4097, 65535, 65536, 65537, 200_003, 7, 3000];
    const sized = sizes.map((n, i) => {
      const p = join(dir, `s${i}.bin`);
      writeFileSync(p, Uint8Array.from({ length: n }, (_, k) => (k * 31 + i) & 255));
      return p;
    });
    const want = Buffer.concat(sized.map((p) => readFileSync(p)));
    for (const room of [1000, 4096, 65536, 1 << 20]) {
      const got: Buffer[] = [];
      for (let from = 0; from < sized.length;) {
        const part = addon.readFiles(sized.slice(from).join('\0'), sized.length - from, 1 << 20, 1 << 20, new ArrayBuffer(room));
        assert.ok(part.read > 0 && [...part.errors.subarray(0, part.read)].every((e) => e === 0), `room ${room}: no errors`);
        got.push(Buffer.from(part.data.buffer, part.data.byteOffset, part.offsets[part.read]));
        from += part.read;
      }
      assert.ok(Buffer.concat(got).equals(want), `room ${room}: every file's bytes, whole`);
    }
  });

  it('decodeImage never throws on garbage', async () => {
    for (const bytes of [new Uint8Array(0), new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]), new Uint8Array([0xff, 0xd8, 0xff, 1, 2]), new Uint8Array(100).fill(0x42)]) {
      const r = await decodeImage(bytes, {}, null);
      assert.equal(r.ok, false);
    }
  });

  /** A tree of `n` 56x56 digits (each MNIST pixel doubled) in 10 class folders: 15k of them decode to 47 MB, so
   * holding the 10x tree's pixels would show far above RSS_GROWTH_LIMIT (~1.5x). Made once per name. */
  const digitTree = (name: string, n: number): string => {
    const root = join(tmp.dir, name);
    if (existsSync(root)) return root;
    const mnist = mnistPixels();
    const big2 = (g: Uint8Array) => Uint8Array.from({ length: 56 * 56 }, (_, k) => g[Math.floor(k / 112) * 28 + Math.floor((k % 56) / 2)]);
    for (let i = 0; i < n; i++) {
      const dir = join(root, `c${i % 10}`);
      if (i < 10) mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${i}.png`), grayPng(big2(mnist.image(i % mnist.count)), 56, 56));
    }
    return root;
  };

  it('peak RSS stays flat when the tree grows 10x', async () => {
    const make = digitTree;
    const small = make('rss1', 1500);
    const big = make('rss10', 15000);
    const script = join(ROOT, 'test', 'drain-source.mjs');
    // Same work for both sizes (10 passes over 1x, one over 10x; each pass starts fresh decode workers, so a leak
    // per file in a worker still shows), and the lower of two runs: V8's heap sizing follows how long a run
    // allocates, and a parallel test file moves single runs by several percent.
    const lower = async (root: string, passes: number) => {
      const a = await runCli([root, '{}', String(passes)], { script });
      const b = await runCli([root, '{}', String(passes)], { script });
      for (const r of [a, b]) { assert.equal(r.code, 0, r.stderr); assert.match(r.stdout, /samples=15000 /); }
      return a.peakRss <= b.peakRss ? a : b;
    };
    const r1 = await lower(small, 10);
    const r10 = await lower(big, 1);
    const ratio = r10.peakRss / r1.peakRss;
    console.log(`image tree peak RSS: 1x ${(r1.peakRss / 1e6).toFixed(1)} MB, 10x ${(r10.peakRss / 1e6).toFixed(1)} MB, ratio ${ratio.toFixed(3)}`);
    assert.ok(ratio < RSS_GROWTH_LIMIT, `peak RSS grew ${ratio.toFixed(3)}x`);
  });

  // Flat thanks to the native gunzip into reused buffers (slimfit_png): node:zlib's fallback hands out a fresh buffer
  // per chunk and measured 1.28x (SLIMFIT_DISABLE=png) to 1.41x (=native) here, so this runs where the addon is on.
  it('peak RSS of reading a .tar.gz stays flat when it grows 10x', { skip: needsAddon('slimfit_png') }, async () => {
    const archive = (n: number) => {
      const out = join(tmp.dir, `digits-${n}.tar.gz`);
      packArchive(digitTree(`rss${n === 1500 ? 1 : 10}`, n), out, 'digits');
      return out;
    };
    const small = archive(1500), big = archive(15000);
    const script = join(ROOT, 'test', 'drain-source.mjs');
    // The header pass and one decode pass each (not the same work as 10 passes over 1x: every pass of an archive
    // reads it twice); the lowest of three runs. (The whole convert was 1.045-1.115x here: V8 let more promoted
    // garbage pile up before its first full collections in the longer run; bench/convert.ts reports it.)
    const lowest = async (tgz: string, n: number) => {
      const runs = [await runCli([tgz, '{}'], { script }), await runCli([tgz, '{}'], { script }), await runCli([tgz, '{}'], { script })];
      for (const r of runs) { assert.equal(r.code, 0, r.stderr); assert.match(r.stdout, new RegExp(`samples=${n} `)); }
      return runs.reduce((a, b) => (b.peakRss < a.peakRss ? b : a));
    };
    const r1 = await lowest(small, 1500);
    const r10 = await lowest(big, 15000);
    const ratio = r10.peakRss / r1.peakRss;
    console.log(`.tar.gz reader peak RSS: 1x ${(r1.peakRss / 1e6).toFixed(1)} MB, 10x ${(r10.peakRss / 1e6).toFixed(1)} MB, ratio ${ratio.toFixed(3)}`);
    assert.ok(ratio < RSS_GROWTH_LIMIT, `peak RSS grew ${ratio.toFixed(3)}x`);
  });

  it('visits a folder\'s image files in Python\'s sorted() order, natively and without the addon', async () => {
    const root = join(tmp.dir, 'order');
    const cls = join(root, 'a');
    mkdirSync(cls, { recursive: true });
    const names = ['b.PNG', 'a.png', '._a.png', 'notes.txt', 'é.png', 'z.jpeg', '\u{1F600}.png', '\uFF21.png', 'x.Gif', 'png', '.png', '10.png', '9.png', 'dir.png.txt'];
    for (const n of names) writeFileSync(join(cls, n), 'x');
    const exts = JSON.stringify(IMAGE_EXTENSIONS);
    // Python is the independent client: sorted() on str is code point order, which is UTF-8 byte order.
    const want = JSON.parse(py(`import os,sys,json; e=tuple(json.loads(sys.argv[2])); print(json.dumps(sorted(n for n in os.listdir(sys.argv[1]) if not n.startswith('._') and os.path.splitext(n)[1].lower() in e and os.path.splitext(n)[0])))`, [cls, exts])) as string[];
    assert.deepEqual(want, ['10.png', '9.png', 'a.png', 'b.PNG', 'x.Gif', 'z.jpeg', 'é.png', '\uFF21.png', '\u{1F600}.png']);
    const visit = async () => {
      const got: string[] = [];
      for await (const e of (await imageTreeInput(root)).entries()) got.push(e.path.slice(cls.length + 1));
      return got;
    };
    const addon = pngAddon();
    if (addon) {
      assert.deepEqual(await visit(), want);
      const r = addon.listImages(cls, IMAGE_EXTENSIONS.join('\0'), new ArrayBuffer(4));
      assert.equal(r.count, want.length); // a buffer too small for the names is not used
      assert.deepEqual(addon.listImages(join(root, 'missing'), '.png'), { errno: 2 });
    }
    const r = await runCli(['-e', `import('${join(ROOT, 'src/formats/image-tree.ts')}').then(async (m) => { const out = []; for await (const e of (await m.imageTreeInput(process.argv[1])).entries()) out.push(e.path); console.log(JSON.stringify(out)); })`, root],
      { script: '--import=tsx', env: disableAlso('png') });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as string[]).map((p) => p.slice(cls.length + 1)), want);
  });
});
