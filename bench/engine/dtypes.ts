// `npm run bench -- dtypes`: the same GEMM in float64, float32, bfloat16 (AVX512_BF16) and int8 (AVX512_VNNI),
// as GFLOP/s (GOP/s for int8) with ratios to float32 of the same implementation, plus the opt-in bf16 training
// GEMM (AMX tiles or AVX512_BF16 on float32 operands) against the engine's default float32 GEMM. Every round is kept
// (rounds are interleaved across kernels) so that callers can show the spread. Reused by the precision lab.
import { loadAddon, type Bf16Kernel, type GemmKind } from '../../src/engine/addon.ts';
import { fmt, markdownTable } from './table.ts';

/** Options of benchDtypes. */
export interface DtypeBenchOptions {
  /** GEMM shapes [M, N, K]; default one MLP layer shape and a square 1024 problem. */
  shapes?: [number, number, number][];
  /** Seconds of measurement per (shape, dtype); default 0.6. */
  seconds?: number;
  /** Timed rounds per measurement, interleaved across dtypes (`rate` is the best, `rounds` has them all); default 3. */
  rounds?: number;
}

/** One measured (or unavailable) GEMM. */
export interface DtypeRow {
  dtype: 'float64' | 'float32' | 'bfloat16' | 'int8';
  /**
   * 'own' = the engine's hand-written kernel, 'openblas' = OpenBLAS through the engine, 'bf16 mode' = the opt-in
   * bf16 training GEMM (float32 operands rounded to bf16 while packing, float32 sums), compared with the engine's
   * default float32 GEMM (OpenBLAS when linked, else own).
   */
  impl: 'own' | 'openblas' | 'bf16 mode';
  /** The instruction doing the multiply-adds, e.g. 'vfmadd231ps (AVX-512)', 'vdpbf16ps', 'vpdpbusd'. */
  instruction: string;
  M: number; N: number; K: number;
  /** GFLOP/s (float) or GOP/s (int8), counting 2·M·N·K operations; null when unavailable. */
  rate: number | null;
  /** rate / the float32 rate of the same implementation and shape; null when unavailable. */
  ratioToFloat32: number | null;
  /** The rate of every round (same unit as `rate`), in round order; empty when unavailable. */
  rounds: number[];
  /** Per round: this rate / the float32 rate of the same round (both measured within seconds of each other). */
  ratioRounds: number[];
  /** Why there is no number (e.g. 'not available on this CPU'), else ''. */
  note: string;
}

const DEFAULT_SHAPES: [number, number, number][] = [[128, 512, 784], [1024, 1024, 1024]];

/** Measure GEMM throughput by dtype with the native engine; throws a clear Error when the addon is not built. */
export function benchDtypes(opts: DtypeBenchOptions = {}): DtypeRow[] {
  const { addon, note } = loadAddon();
  if (!addon) throw new Error(`${note}; bench dtypes needs the native engine`);
  const info = addon.info();
  const seconds = opts.seconds ?? 0.6, rounds = opts.rounds ?? 3;
  const vec = info.isa === 'avx512' ? 'AVX-512' : info.isa === 'avx2' ? 'AVX2' : 'scalar';
  const rows: DtypeRow[] = [];
  const bf16 = addon.bf16Info?.() ?? { kernel: 'none' as const, avx512bf16: false, amx: false, amxNote: '' };
  const bf16Kernels: Bf16Kernel[] = [...(bf16.amx ? ['amx' as const] : []), ...(bf16.avx512bf16 ? ['avx512bf16' as const] : [])];
  const f32Default: GemmKind = info.openblas ? 'f32blas' : 'f32own';
  for (const [M, N, K] of opts.shapes ?? DEFAULT_SHAPES) {
    // Operands per kind; rounds are interleaved across kinds so that a load change on the machine hits all alike.
    const setups = new Map<string, () => void>();
    const prepare = (kind: GemmKind): boolean => {
      const Arr = kind.startsWith('f64') ? Float64Array : kind === 'bf16' ? Uint16Array : kind === 'i8' ? Uint8Array : Float32Array;
      const A = new Arr(M * K), B = new Arr(K * N);
      // values: bf16 bit patterns of numbers in [0.5, 1), bytes in [0, 100), floats in [0, 1)
      for (const a of [A, B]) for (let i = 0; i < a.length; i++) a[i] = kind === 'bf16' ? 0x3f00 + ((i * 37) & 0x7f) : kind === 'i8' ? (i * 37) % 100 : ((i * 37) % 100) / 100;
      const C = kind.startsWith('f64') ? new Float64Array(M * N) : kind === 'i8' ? new Int32Array(M * N) : new Float32Array(M * N);
      if (!addon.gemmDtype(kind, M, N, K, A, B, C)) return false;
      setups.set(kind, () => { addon.gemmDtype(kind, M, N, K, A, B, C); });
      return true;
    };
    const prepareBf16 = (k: Bf16Kernel): void => {
      const A = new Float32Array(M * K).map((_, i) => ((i * 37) % 100) / 100), B = new Float32Array(K * N).map((_, i) => ((i * 37) % 100) / 100);
      const C = new Float32Array(M * N);
      if (addon.gemmBf16(k, 0, 0, M, N, K, A, B, C)) setups.set(`bf16-${k}`, () => { addon.gemmBf16(k, 0, 0, M, N, K, A, B, C); });
    };
    const rates = new Map<string, number[]>();
    const measureAll = (): void => {
      const list = [...setups];
      for (let r = 0; r < rounds; r++) {
        // the order rotates by one each round, so no kernel always runs first (or right after the same neighbour)
        for (const [kind, run] of [...list.slice(r % list.length), ...list.slice(0, r % list.length)]) {
          let reps = 0, dt = 0;
          const t0 = performance.now();
          do { run(); reps++; dt = (performance.now() - t0) / 1000; } while (dt < seconds / rounds);
          rates.set(kind, [...(rates.get(kind) ?? []), (2 * M * N * K * reps) / dt / 1e9]);
        }
      }
    };
    const kinds: GemmKind[] = ['f64own', 'f32own', ...(info.bf16 ? ['bf16' as const] : []), ...(info.vnni ? ['i8' as const] : []), ...(info.openblas ? ['f64blas' as const, 'f32blas' as const] : [])];
    for (const k of kinds) prepare(k);
    for (const k of bf16Kernels) prepareBf16(k);
    measureAll();
    const row = (dtype: DtypeRow['dtype'], impl: DtypeRow['impl'], instruction: string, kind: string, ref: string, why: string): DtypeRow => {
      const rs = rates.get(kind) ?? [], fs = rates.get(ref) ?? [];
      const rate = rs.length ? Math.max(...rs) : null, f = fs.length ? Math.max(...fs) : null;
      return { dtype, impl, instruction, M, N, K, rate, ratioToFloat32: rate != null && f ? rate / f : null, rounds: rs, ratioRounds: rs.length === fs.length ? rs.map((v, i) => v / fs[i]) : [], note: rate == null ? why : '' };
    };
    rows.push(
      row('float64', 'own', `vfmadd231pd (${vec})`, 'f64own', 'f32own', ''),
      row('float32', 'own', `vfmadd231ps (${vec})`, 'f32own', 'f32own', ''),
      row('bfloat16', 'own', 'vdpbf16ps (AVX512_BF16)', 'bf16', 'f32own', 'not available on this CPU (no AVX512_BF16)'),
      row('int8', 'own', 'vpdpbusd (AVX512_VNNI), uint8 x int8 -> int32', 'i8', 'f32own', 'not available on this CPU (no AVX512_VNNI)'),
    );
    if (info.openblas) rows.push(row('float64', 'openblas', 'OpenBLAS dgemm', 'f64blas', 'f32blas', ''), row('float32', 'openblas', 'OpenBLAS sgemm', 'f32blas', 'f32blas', ''));
    const vs = info.openblas ? 'vs OpenBLAS sgemm' : 'vs own float32';
    rows.push(
      row('bfloat16', 'bf16 mode', `tdpbf16ps (AMX tiles), operands rounded to bf16 while packing, ${vs}`, 'bf16-amx', f32Default, `not available here (${bf16.amx ? 'AMX refused' : bf16.amxNote || 'no AMX-BF16'})`),
      row('bfloat16', 'bf16 mode', `vdpbf16ps (AVX512_BF16), operands rounded to bf16 while packing, ${vs}`, 'bf16-avx512bf16', f32Default, 'not available on this CPU (no AVX512_BF16)'),
    );
  }
  return rows;
}

/** The dtype rows as a markdown table. */
export function dtypesTable(rows: DtypeRow[]): string {
  return markdownTable(['shape M×N×K', 'dtype', 'kernel', 'instruction', 'GFLOP/s (GOP/s int8)', 'ratio to float32'],
    rows.map((r) => [`${r.M}×${r.N}×${r.K}`, r.dtype, r.impl, r.instruction, r.rate == null ? r.note : fmt(r.rate), r.rate == null ? '–' : `${fmt(r.ratioToFloat32, 2)}x`]));
}
