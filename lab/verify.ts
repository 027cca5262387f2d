// `npm run lab -- verify-formats [--exhaustive]`: slimfit's fp16 and bf16 rounding checked bit for bit against numpy,
// on a seeded sample of float32 patterns (ties, subnormals, overflow edges) or on all 2^32 of them, plus double inputs
// (one rounding, no float32 step) against numpy's float64 -> float16.
import { spawn } from 'node:child_process';
import { BF16, FP16, encode, quantizeF64 } from '../src/precision/formats.ts';
import { createRng } from '../src/precision/rng.ts';
import { SlimfitError } from '../src/core/errors.ts';

/** Outcome of one check. */
export interface VerifyResult { check: string; patterns: number; nans: number; mismatches: number; examples: string[] }

// numpy side: fp16 by astype (numpy's own conversion); bf16 by the round-to-nearest-even bit formula PyTorch's c10
// uses (bias 0x7fff + lowest kept bit, NaN -> 0x7fc0), computed in numpy integers: independent of slimfit's code.
const PY = `import sys, numpy as np
mode = sys.argv[1]
out = sys.stdout.buffer
def both(u):
    x = u.view(np.float32)
    with np.errstate(all='ignore'):
        h = x.astype(np.float16).view(np.uint16)
    v = u.astype(np.uint64)
    b = ((v + 0x7fff + ((v >> 16) & 1)) >> 16).astype(np.uint16)
    b = np.where((u & 0x7fffffff) > 0x7f800000, np.uint16(0x7fc0), b)
    out.write(h.tobytes()); out.write(b.tobytes())
if mode == 'range':
    log2 = int(sys.argv[2]); n = 1 << log2
    for c in range(1 << (32 - log2)):
        both((np.arange(n, dtype=np.uint64) + c * n).astype(np.uint32))
elif mode == 'file':
    both(np.fromfile(sys.argv[2], dtype='<u4'))
else:
    x = np.fromfile(sys.argv[2], dtype='<f8')
    with np.errstate(all='ignore'):
        out.write(x.astype(np.float16).view(np.uint16).tobytes())
out.flush()`;

/** Run the python side and hand out its output in pieces of `chunkBytes`. */
async function* pyChunks(args: string[], chunkBytes: number): AsyncGenerator<Buffer> {
  const child = spawn('python3', ['-c', PY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const closed = new Promise<number | null>((res) => child.on('close', res));
  child.on('error', () => undefined);
  let parts: Buffer[] = [];
  let have = 0;
  for await (const data of child.stdout) {
    parts.push(data as Buffer);
    have += (data as Buffer).length;
    while (have >= chunkBytes) {
      const all = Buffer.concat(parts);
      yield all.subarray(0, chunkBytes);
      parts = [all.subarray(chunkBytes)];
      have = all.length - chunkBytes;
    }
  }
  const code = await closed;
  if (code !== 0) throw new SlimfitError(`verify-formats: python3 with numpy failed (exit ${code}): ${err.trim().split('\n').pop() ?? ''}`, { hint: 'install numpy for python3 (pip install numpy)' });
}

const isNaN16 = (c: number, expMask: number, manMask: number) => (c & expMask) === expMask && (c & manMask) !== 0;

function compare(name: string, ours: Uint16Array, ref: Uint16Array, bits: Uint32Array, res: VerifyResult, expMask: number, manMask: number): void {
  for (let i = 0; i < ours.length; i++) {
    res.patterns++;
    if (isNaN16(ref[i], expMask, manMask)) {
      res.nans++;
      if (!isNaN16(ours[i], expMask, manMask)) res.mismatches++;
    } else if (ours[i] !== ref[i]) {
      if (res.mismatches++ < 5) res.examples.push(`${name} 0x${bits[i].toString(16)}: slimfit 0x${ours[i].toString(16)}, reference 0x${ref[i].toString(16)}`);
    }
  }
}

/** A seeded sample of float32 patterns: random, ties and near-ties of fp16 and bf16, subnormals, overflow edges. */
export function samplePatterns(n: number, seed = 1): Uint32Array {
  const rng = createRng(seed);
  const b = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const r = rng.u32();
    const k = i % 6;
    const e = k === 5 ? [0, 1, 102, 103, 112, 113, 142, 143, 254, 255][r % 10] : 97 + (r % 50);
    const low = k === 0 ? 0x1000 : k === 1 ? 0x0fff : k === 2 ? 0x8000 : k === 3 ? 0x7fff : rng.u32() & 0xffff;
    b[i] = ((rng.u32() & 0x80000000) | (k === 4 ? rng.u32() & 0x7fffffff : (e << 23) | (rng.u32() & 0x7f0000) | (k < 2 ? (rng.u32() & 0xe000) | low : low))) >>> 0;
  }
  return b;
}

/** Run the checks: sampled (default, `n` patterns) or exhaustive over all 2^32 float32 patterns. */
export async function verifyFormats(o: { exhaustive?: boolean; n?: number; log?: (s: string) => void; tmp: string }): Promise<VerifyResult[]> {
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const log = o.log ?? (() => undefined);
  const fp16: VerifyResult = { check: 'fp16 round-to-nearest-even vs numpy astype(float16)', patterns: 0, nans: 0, mismatches: 0, examples: [] };
  const bf16: VerifyResult = { check: 'bf16 round-to-nearest-even vs the c10 bit formula in numpy', patterns: 0, nans: 0, mismatches: 0, examples: [] };
  const dbl: VerifyResult = { check: 'fp16 from float64 (one rounding) vs numpy float64 -> float16', patterns: 0, nans: 0, mismatches: 0, examples: [] };
  const run = async (bits: Uint32Array, src: AsyncGenerator<Buffer>, chunk: number, base: (c: number) => void) => {
    let c = 0;
    const x = new Float32Array(bits.buffer);
    const h = new Uint16Array(chunk), b = new Uint16Array(chunk);
    for await (const buf of src) {
      const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
      base(c);
      encode(FP16, x, h);
      encode(BF16, x, b);
      compare('fp16', h, new Uint16Array(ab, 0, chunk), bits, fp16, 0x7c00, 0x3ff);
      compare('bf16', b, new Uint16Array(ab, 2 * chunk, chunk), bits, bf16, 0x7f80, 0x7f);
      if (++c % 16 === 0) log(`  ${c} chunks of ${chunk} patterns`);
    }
    return c;
  };
  if (o.exhaustive) {
    const LOG2 = 24, chunk = 2 ** LOG2;
    const bits = new Uint32Array(chunk);
    const chunks = await run(bits, pyChunks(['range', String(LOG2)], 4 * chunk), chunk, (c) => { for (let i = 0; i < chunk; i++) bits[i] = c * chunk + i; });
    if (chunks !== 2 ** (32 - LOG2)) throw new SlimfitError(`verify-formats: numpy stopped after ${chunks} of ${2 ** (32 - LOG2)} chunks`);
  } else {
    const n = o.n ?? 1 << 20;
    const bits = samplePatterns(n);
    writeFileSync(join(o.tmp, 'patterns.bin'), bits);
    await run(bits, pyChunks(['file', join(o.tmp, 'patterns.bin')], 4 * n), n, () => undefined);
  }
  // doubles: fp16 midpoints plus offsets far below float32 resolution (where rounding through float32 goes wrong)
  const rng = createRng(3);
  const m = o.exhaustive ? 1 << 24 : 1 << 16;
  const xd = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    const e = -26 + Math.floor(rng.uniform() * 43);
    const tie = (1024 + Math.floor(rng.uniform() * 1024) + 0.5) * 2 ** (e - 10);
    xd[i] = (rng.uniform() < 0.5 ? -1 : 1) * (tie + [0, 1, -1, rng.normal()][i % 4] * 2 ** (e - 10 - 20 - Math.floor(rng.uniform() * 22)));
  }
  writeFileSync(join(o.tmp, 'doubles.bin'), xd);
  for await (const buf of pyChunks(['f64', join(o.tmp, 'doubles.bin')], 2 * m)) {
    const ref = new Uint16Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    const ours = encode(FP16, quantizeF64(FP16, xd)) as Uint16Array;
    const asBits = new Uint32Array(m).map((_, i) => i);
    compare('fp16(f64)', ours, ref, asBits, dbl, 0x7c00, 0x3ff);
  }
  return [fp16, bf16, dbl];
}
