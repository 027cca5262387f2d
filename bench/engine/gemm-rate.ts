// GFLOP/s of the engine's float32 GEMM at one shape, in each of its modes: what `npm run bench -- engine` measures per
// training shape, at the ceiling shape, and between its training runs (the ceiling beside each run).
import { loadAddon } from '../../src/engine/addon.ts';

/** A GEMM shape at which a training step multiplies: C[M,N] = op(A)·op(B) with K the inner size. */
export interface GemmShape { name: string; M: number; N: number; K: number; transA: boolean; transB: boolean }

/** The square GEMM whose best rate is the machine's float32 ceiling in the engine report. */
export const CEILING_SHAPE: GemmShape = { name: 'ceiling 2048³', M: 2048, N: 2048, K: 2048, transA: false, transB: false };

/** The engine's float32 GEMM modes: the own kernels, and oneDNN and OpenBLAS when linked. */
export const ENGINE_GEMMS = ['own', 'onednn', 'openblas'] as const;
export type EngineGemm = (typeof ENGINE_GEMMS)[number];

/** Operand buffers of one shape (filled with fixed values), kept per shape: the 2048³ ones take 48 MB. */
const operands = new Map<string, { buf: ArrayBuffer; A: Float32Array; B: Float32Array; C: Float32Array }>();

/**
 * A call of the engine's float32 GEMM at `shape` on fixed operands (C = op(A)·op(B)), and the operands as float32
 * views (for callers that time another kernel on the same data). Throws when the native engine is not built.
 *
 * @example
 * const { run } = gemmRunner(CEILING_SHAPE); run(); // one 2048³ product
 */
export function gemmRunner(shape: GemmShape): { run: () => void; A: Float32Array; B: Float32Array; C: Float32Array } {
  const { addon, note } = loadAddon();
  if (!addon) throw new Error(`${note}; the GEMM rate needs the native engine`);
  const { M, N, K, transA, transB } = shape;
  const key = `${M}x${N}x${K}`;
  let o = operands.get(key);
  if (!o) {
    const buf = new ArrayBuffer(4 * (M * K + K * N + M * N));
    const f = new Float32Array(buf);
    for (let i = 0; i < f.length; i++) f[i] = ((i * 37) % 101) / 101;
    o = { buf, A: new Float32Array(buf, 0, M * K), B: new Float32Array(buf, 4 * M * K, K * N), C: new Float32Array(buf, 4 * (M * K + K * N), M * N) };
    operands.set(key, o);
  }
  const { buf } = o;
  const run = (): void => addon.gemm(buf, +transA, +transB, M, N, K, 0, transA ? M : K, 4 * M * K, transB ? K : N, 4 * (M * K + K * N), N, 1, 0, 0, 0, -1, 0, 0);
  return { run, A: o.A, B: o.B, C: o.C };
}

/**
 * The best of `rounds` timed rounds (seconds / rounds each, at least one call) of the engine's GEMM at `shape` in
 * `mode` ('' = the engine's default), on the engine's threads. Throws when the native engine is not built.
 *
 * @example
 * gemmRate(CEILING_SHAPE, 0.9, 3, 'onednn'); // e.g. 320 (GFLOP/s)
 */
export function gemmRate(shape: GemmShape, seconds: number, rounds: number, mode: EngineGemm | '' = ''): number {
  const { run } = gemmRunner(shape);
  const addon = loadAddon().addon!;
  const { M, N, K } = shape;
  const before = addon.info().gemm;
  addon.setGemmMode(mode);
  try {
    run();
    const rates: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let reps = 0, dt = 0;
      const t0 = performance.now();
      do { run(); reps++; dt = (performance.now() - t0) / 1000; } while (dt < seconds / rounds);
      rates.push((2 * M * N * K * reps) / dt / 1e9);
    }
    return Math.max(...rates);
  } finally {
    addon.setGemmMode(before);
  }
}

/** The engine's GEMM modes available in this build. */
export function engineGemms(): EngineGemm[] {
  const { addon } = loadAddon();
  const i = addon?.info();
  return ENGINE_GEMMS.filter((m) => m === 'own' || (m === 'onednn' ? !!i?.onednn : !!i?.openblas));
}

/**
 * The float32 ceiling as this process sees it now: each available mode's best rate at CEILING_SHAPE on the engine's
 * threads (the engine bench times it between its training runs, so a run's fraction of it compares two rates
 * measured seconds apart).
 *
 * @example
 * ceilingNow(0.2); // { own: 210, onednn: 321, openblas: 293 }
 */
export function ceilingNow(secondsEach: number): Partial<Record<EngineGemm, number>> {
  const out: Partial<Record<EngineGemm, number>> = {};
  for (const m of engineGemms()) out[m] = gemmRate(CEILING_SHAPE, secondsEach, 2, m);
  return out;
}
