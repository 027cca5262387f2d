// The duplicate index against a plain Map of 64-bit keys: same answers through every table's growth, memory that
// follows the sample count, and hashes computed from sample bytes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDuplicateIndex } from '../src/store/dedupe.ts';

/** xorshift32 stream of uint32s. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; return (s >>>= 0); };
}

test('duplicate index: same split bits as a Map reference over 300k fingerprints, repeats and near-collisions, with growth', () => {
  const r = rng(7);
  const idx = createDuplicateIndex();
  const ref = new Map<string, number>();
  const keys: Array<[number, number]> = [];
  for (let n = 0; n < 300_000; n++) {
    let lo: number, hi: number;
    const pick = r() % 10;
    if (pick < 2 && keys.length) [lo, hi] = keys[r() % keys.length]; // an exact repeat
    else if (pick === 2 && keys.length) { [lo, hi] = keys[r() % keys.length]; hi = (hi ^ 1) >>> 0; } // same table, same home slot, other key
    else if (pick === 3 && keys.length) { [lo, hi] = keys[r() % keys.length]; hi = (hi ^ 0x1000000) >>> 0; } // other table only
    else { lo = r(); hi = r(); }
    keys.push([lo, hi]);
    const split = r() % 3;
    const k = `${lo}:${hi}`;
    const want = ref.get(k) ?? 0;
    ref.set(k, want | (1 << split));
    assert.equal(idx.add(new Uint8Array(0), split, lo, hi), want, `sample ${n}`);
  }
  assert.equal(idx.size, ref.size);
  // Between 8 and 20 bytes per distinct fingerprint once past the tables' starting size.
  const per = idx.bytes / idx.size;
  assert.ok(per >= 8 && per <= 20, `${per.toFixed(1)} bytes per sample`);
  assert.throws(() => idx.add(new Uint8Array(0), 8, 1, 1), /at most 8 splits/);
});

test('duplicate index hashes sample bytes itself when no hash is given: equal bytes match, one changed byte does not', () => {
  const idx = createDuplicateIndex();
  const a = new Uint8Array(784).map((_, i) => i * 7);
  assert.equal(idx.add(a, 0), 0);
  assert.equal(idx.add(a.slice(), 1), 0b01);
  const b = a.slice(); b[783] ^= 1;
  assert.equal(idx.add(b, 0), 0);
  assert.equal(idx.add(a.subarray(0), 2), 0b11); // same bytes through a view
  assert.equal(idx.size, 2);
});

test('duplicate index sized for a known count holds it without growing, and still grows past it', () => {
  const r = rng(11);
  const idx = createDuplicateIndex(210_000);
  const bytes0 = idx.bytes;
  assert.ok(bytes0 / 210_000 < 14, `${(bytes0 / 210_000).toFixed(1)} bytes per expected sample`);
  for (let n = 0; n < 210_000; n++) idx.add(new Uint8Array(0), 0, r(), r());
  assert.equal(idx.bytes, bytes0, 'no table grew');
  for (let n = 0; n < 200_000; n++) idx.add(new Uint8Array(0), 1, r(), r());
  assert.equal(idx.size, 410_000);
  assert.ok(idx.bytes > bytes0);
});

test('duplicate index: a huge claimed count (e.g. from a corrupt header) pre-sizes at most ~43 MB', () => {
  const idx = createDuplicateIndex(1e12);
  assert.ok(idx.bytes < 50e6, `${(idx.bytes / 1e6).toFixed(1)} MB`);
  assert.equal(idx.add(new Uint8Array(4), 0), 0);
});
