// GFLOP/s of the engine's float32 GEMM at one shape, in each of its modes: what `npm run bench -- engine` measures per
// training shape and at the ceiling shape, and what each training child measures beside its timed epoch.
import { loadAddon } from '../../src/engine/addon.ts';

/** A GEMM shape at which a training step multiplies: C[M,N] = op(A)·op(B) with K the inner size. */
export interface GemmShape { name: string; M: number; N: number; K: number; transA: boolean; transB: boolean }

/** The square GEMM whose best rate is the machine's float32 ceiling in the engine report. */
export const CEILING_SHAPE: GemmShape = { name: 'ceiling 2048³', M: 2048, N: 2048, K: 2048, transA: false, transB: false };

/** The engine's float32 GEMM modes that can run here: the own kernels always, oneDNN and OpenBLAS when linked. */
export type EngineGemm = 'own' | 'onednn' | 'openblas';

/**
 * The best of `rounds` timed rounds (seconds / rounds each, at least one call) of the engine's GEMM at `shape` in
 * `mode` ('' = the engine's default), on the engine's threads. Throws when the native engine is not built.
 *
 * @example
 * gemmRate(CEILING_SHAPE, 0.9, 3, 'onednn'); // e.g. 320 (GFLOP/s)
 */
export function gemmRate(shape: GemmShape, seconds: number, rounds: number, mode: EngineGemm | '' = ''): number {
  const { addon, note } = loadAddon();
  if (!addon) throw new Error(`${note}; the GEMM rate needs the native engine`);
  const { M, N, K, transA, transB } = shape;
  const buf = new ArrayBuffer(4 * (M * K + K * N + M * N));
  const f = new Float32Array(buf);
  for (let i = 0; i < f.length; i++) f[i] = ((i * 37) % 101) / 101;
  const run = (): void => addon.gemm(buf, +transA, +transB, M, N, K, 0, transA ? M : K, 4 * M * K, transB ? K : N, 4 * (M * K + K * N), N, 1, 0, 0, 0, -1, 0, 0);
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
  return ['own', ...(i?.onednn ? ['onednn' as const] : []), ...(i?.openblas ? ['openblas' as const] : [])];
}

/**
 * The float32 ceiling as this process sees it now: each available mode's best rate at CEILING_SHAPE on the engine's
 * threads (the training children measure it right before and right after their timed epoch, so a fraction of it
 * compares two rates of the same process and minute).
 *
 * @example
 * ceilingNow(0.2); // { own: 210, onednn: 321, openblas: 293 }
 */
export function ceilingNow(secondsEach: number): Partial<Record<EngineGemm, number>> {
  const out: Partial<Record<EngineGemm, number>> = {};
  for (const m of engineGemms()) out[m] = gemmRate(CEILING_SHAPE, secondsEach, 2, m);
  return out;
}
