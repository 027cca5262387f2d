// The precision lab's low-precision storage kernels (native/lowp.cc): fp16-stored GEMM widened while packing, and
// GEMV with fp32 / bf16 / fp16 / int8 weights, against plain JS on the decoded values; plus the speed section's helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsAddon } from '../dev/helpers.ts';
import { BF16, FP16, decode, encode, quantizeScalar } from '../src/precision/formats.ts';
import { loadAddon } from '../src/engine/addon.ts';
import { cpuFeatures, fmtRatio, speedAnswerBullets, type SpeedData } from '../lab/speed.ts';

type LowpFn = (kind: string, M: number, N: number, K: number, A: ArrayBufferView, B: ArrayBufferView, C: ArrayBufferView) => string | null;
const skip = needsAddon('slimfit_engine');
const lowp = (): LowpFn => { const a = loadAddon().addon as unknown as { lowp: LowpFn }; return a.lowp.bind(a); };

function close(got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>, what: string): void {
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5 * scale[i] + 1e-6, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

test('lowp GEMM: fp32 B and fp16-stored B (widened while packing) equal a plain product, across block edges', { skip }, () => {
  const f = lowp();
  const [M, N, K] = [6, 545, 300]; // a partial row block, a partial 32-column strip past the 512-column block, a second K block
  const A = new Float32Array(M * K).map((_, i) => Math.sin(i));
  const B = new Float32Array(K * N).map((_, i) => Math.cos(0.7 * i));
  const Bh = encode(FP16, B) as Uint16Array, Bd = decode(FP16, Bh);
  for (const [kind, Bin, Bval] of [['gemm_f32', B, B], ['gemm_f16', Bh, Bd]] as const) {
    const C = new Float32Array(M * N).fill(NaN);
    const ins = f(kind, M, N, K, A, Bin, C);
    if (ins === null) continue; // this CPU lacks AVX-512F/F16C: the speed table says "not on this CPU"
    assert.match(ins, kind === 'gemm_f16' ? /vcvtph2ps/ : /vfmadd231ps/);
    const want = new Float64Array(M * N), mag = new Float64Array(M * N);
    for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) { const t = A[i * K + k] * Bval[k * N + j]; want[i * N + j] += t; mag[i * N + j] += Math.abs(t); }
    close(C, want, mag, kind);
  }
});

test('lowp GEMM in fp16 arithmetic (AVX512_FP16): every multiply-add rounded once to fp16, as an fp16 FMA does', { skip }, () => {
  const f = lowp();
  const [M, N, K] = [5, 70, 100]; // one K block: the fp16 sum is converted to float32 once
  const A = encode(FP16, new Float32Array(M * K).map((_, i) => Math.sin(i))) as Uint16Array, B = encode(FP16, new Float32Array(K * N).map((_, i) => Math.cos(0.3 * i))) as Uint16Array;
  const Ad = decode(FP16, A), Bd = decode(FP16, B);
  const C = new Float32Array(M * N);
  const ins = f('gemm_f16fma', M, N, K, A, B, C);
  if (ins === null) return; // no AVX512_FP16 (or a compiler without it): the table says "not on this CPU"
  assert.match(ins, /vfmadd231ph/);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let acc = 0;
    for (let k = 0; k < K; k++) acc = quantizeScalar(FP16, Ad[i * K + k] * Bd[k * N + j] + acc); // exact product + sum, one rounding
    assert.equal(C[i * N + j], acc, `C[${i}, ${j}]`);
  }
});

test('lowp GEMV: weights stored as fp32, bf16, fp16 (widened) and int8 (vpdpbusd) equal plain dot products', { skip }, () => {
  const f = lowp();
  const [N, K] = [7, 150]; // three rows in the 4-row block's tail, K not a multiple of 16 or 64
  const W = new Float32Array(N * K).map((_, i) => Math.sin(1.3 * i));
  const x = new Float32Array(K).map((_, i) => Math.cos(i));
  const cases: [string, ArrayBufferView, Float32Array][] = [['gemv_f32', W, W], ['gemv_bf16', encode(BF16, W), decode(BF16, encode(BF16, W))], ['gemv_f16', encode(FP16, W), decode(FP16, encode(FP16, W))]];
  for (const [kind, Win, Wval] of cases) {
    const y = new Float32Array(N).fill(NaN);
    if (f(kind, 1, N, K, Win, x, y) === null) continue;
    const want = new Float64Array(N), mag = new Float64Array(N);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) { want[n] += Wval[n * K + k] * x[k]; mag[n] += Math.abs(Wval[n * K + k] * x[k]); }
    close(y, want, mag, kind);
  }
  const Wi = new Int8Array(N * K).map((_, i) => ((i * 37) % 255) - 127), xu = new Uint8Array(K).map((_, i) => (i * 91) % 256);
  const yi = new Int32Array(N);
  if (f('gemv_i8', 1, N, K, Wi, xu, yi) !== null) {
    for (let n = 0; n < N; n++) { let s = 0; for (let k = 0; k < K; k++) s += Wi[n * K + k] * xu[k]; assert.equal(yi[n], s, `row ${n}`); }
  }
  assert.throws(() => f('gemv_f32', 1, N, K, W, x, new Float32Array(N - 1)), /too small/);
  assert.throws(() => f('gemv_f32', 2, N, K, W, x, new Float32Array(2 * N)), /M = 1/);
  assert.throws(() => f('nope', 1, 1, 1, W, x, W), /lowp kind/);
});

test('speed helpers: ratios keep significant digits, CPU features are read, answer bullets quote the rows', () => {
  assert.equal(fmtRatio(0.0036), '0.0036x');
  assert.equal(fmtRatio(0.77), '0.77x');
  assert.equal(fmtRatio(1.354), '1.35x');
  assert.equal(fmtRatio(null), '–');
  const cpu = cpuFeatures();
  assert.ok(cpu.features.some((x) => x.name === 'AVX-512 BF16') && cpu.features.length >= 10);
  const data = {
    quick: true, memory: [], engineNote: '', llcBytes: null, load: [1, 1, 1], cpu,
    gemm: [{ source: 'slimfit lab kernel, 1 thread (vfmadd231ps (AVX-512))', dtype: 'float32', shape: '8×8×8', gflops: 50, ratio: 1, note: '' },
      { source: 'slimfit lab kernel, 1 thread (vcvtph2ps)', dtype: 'float16 storage, fp32 math', shape: '8×8×8', gflops: 40, ratio: 0.8, note: '' },
      { source: 'slimfit lab kernel, 1 thread (needs AVX512_FP16)', dtype: 'float16 math (fp16 sums)', shape: '8×8×8', gflops: null, ratio: null, note: 'not on this CPU (needs AVX512_FP16)' },
      { source: 'numpy 1.26 (no BLAS for float16)', dtype: 'float16', shape: '8×8×8', gflops: 0.2, ratio: 0.0036, note: '' }],
    gemv: [{ size: '4096×4096', dtype: 'float32', weightBytes: 64 * 2 ** 20, instruction: 'x', gflops: 5, gbps: 10, ratio: 1, note: '' },
      { size: '4096×4096', dtype: 'bfloat16 storage, fp32 math', weightBytes: 32 * 2 ** 20, instruction: 'x', gflops: 9, gbps: 9, ratio: 1.8, note: '' }],
  } as SpeedData;
  const b = speedAnswerBullets(data).join('\n');
  assert.match(b, /0\.80x\); fp16 arithmetic: not on this CPU \(needs AVX512_FP16\)/);
  assert.match(b, /0\.0036x of its float32/);
  assert.match(b, /bfloat16 32 MiB in .* 1\.80x the speed of float32/);
});
