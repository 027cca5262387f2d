// Exhaustive check (not a test: minutes): slimfit's fp16 round-to-nearest-even on ALL 2^32 float32 bit patterns vs
// numpy's astype(np.float16), streamed chunk by chunk from a python3 child. NaN inputs: both sides must give NaN.
// Run: node --import tsx bench/precision-fp16-exhaustive.ts [log2 chunk = 24]
import { spawn } from 'node:child_process';
import { encode, FP16 } from '../src/precision/formats.ts';

const LOG2 = Number(process.argv[2] ?? 24);
const CHUNK = 2 ** LOG2;
const CHUNKS = 2 ** (32 - LOG2);
const code = `import sys, numpy as np
n = ${CHUNK}
out = sys.stdout.buffer
with np.errstate(all='ignore'):
    for c in range(${CHUNKS}):
        x = (np.arange(n, dtype=np.uint64) + c * n).astype(np.uint32).view(np.float32)
        out.write(x.astype(np.float16).view(np.uint16).tobytes())
out.flush()`;

const child = spawn('python3', ['-c', code], { stdio: ['ignore', 'pipe', 'inherit'] });
const bits = new Uint32Array(CHUNK);
const x = new Float32Array(bits.buffer);
const ours = new Uint16Array(CHUNK);
let parts: Buffer[] = [];
let have = 0;
let chunk = 0, mismatches = 0, nans = 0;
const t0 = performance.now();
for await (const data of child.stdout) {
  parts.push(data as Buffer);
  have += (data as Buffer).length;
  while (have >= 2 * CHUNK) {
    const all = Buffer.concat(parts);
    const ref = new Uint16Array(all.buffer.slice(all.byteOffset, all.byteOffset + 2 * CHUNK));
    parts = [all.subarray(2 * CHUNK)];
    have = all.length - 2 * CHUNK;
    const base = chunk * CHUNK;
    for (let i = 0; i < CHUNK; i++) bits[i] = base + i;
    encode(FP16, x, ours);
    for (let i = 0; i < CHUNK; i++) {
      const r = ref[i], o = ours[i];
      if ((r & 0x7c00) === 0x7c00 && (r & 0x3ff) !== 0) { nans++; if (!((o & 0x7c00) === 0x7c00 && (o & 0x3ff) !== 0)) mismatches++; } else if (r !== o) {
        if (mismatches++ < 10) console.log(`mismatch at 0x${(base + i).toString(16)}: ours 0x${o.toString(16)} numpy 0x${r.toString(16)}`);
      }
    }
    chunk++;
    if (chunk % 16 === 0) process.stderr.write(`  ${chunk}/${CHUNKS} chunks, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  }
}
console.log(`fp16 exhaustive: ${chunk * CHUNK} float32 patterns checked (${nans} NaN), ${mismatches} mismatches vs numpy, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
process.exitCode = mismatches === 0 && chunk === CHUNKS ? 0 : 1;
