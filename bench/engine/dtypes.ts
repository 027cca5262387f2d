// `npm run bench -- dtypes`: the same GEMM in float64, float32, bfloat16 (AVX512_BF16) and int8 (AVX512_VNNI),
// as GFLOP/s (GOP/s for int8) with ratios to float32 of the same implementation. Reused by the precision lab.
import { loadAddon, type GemmKind } from '../../src/engine/addon.ts';
import { fmt, markdownTable } from './table.ts';

/** Options of benchDtypes. */
export interface DtypeBenchOptions {
  /** GEMM shapes [M, N, K]; default one MLP layer shape and a square 1024 problem. */
  shapes?: [number, number, number][];
  /** Seconds of measurement per (shape, dtype); default 0.6. */
  seconds?: number;
  /** Timed rounds per measurement, interleaved across dtypes (the best is reported); default 3. */
  rounds?: number;
}

/** One measured (or unavailable) GEMM. */
export interface DtypeRow {
  dtype: 'float64' | 'float32' | 'bfloat16' | 'int8';
  /** 'own' = the engine's hand-written kernel, 'openblas' = OpenBLAS through the engine. */
  impl: 'own' | 'openblas';
  /** The instruction doing the multiply-adds, e.g. 'vfmadd231ps (AVX-512)', 'vdpbf16ps', 'vpdpbusd'. */
  instruction: string;
  M: number; N: number; K: number;
  /** GFLOP/s (float) or GOP/s (int8), counting 2·M·N·K operations; null when unavailable. */
  rate: number | null;
  /** rate / the float32 rate of the same implementation and shape; null when unavailable. */
  ratioToFloat32: number | null;
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
  for (const [M, N, K] of opts.shapes ?? DEFAULT_SHAPES) {
    // Operands per kind; rounds are interleaved across kinds so that a load change on the machine hits all alike.
    const setups = new Map<GemmKind, () => void>();
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
    const rates = new Map<GemmKind, number[]>();
    const measureAll = (): void => {
      for (let r = 0; r < rounds; r++) {
        for (const [kind, run] of setups) {
          let reps = 0, dt = 0;
          const t0 = performance.now();
          do { run(); reps++; dt = (performance.now() - t0) / 1000; } while (dt < seconds / rounds);
          rates.set(kind, [...(rates.get(kind) ?? []), (2 * M * N * K * reps) / dt / 1e9]);
        }
      }
    };
    const measure = (kind: GemmKind): number | null => (rates.has(kind) ? Math.max(...rates.get(kind)!) : null);
    const kinds: GemmKind[] = ['f64own', 'f32own', ...(info.bf16 ? ['bf16' as const] : []), ...(info.vnni ? ['i8' as const] : []), ...(info.blas === 'openblas' ? ['f64blas' as const, 'f32blas' as const] : [])];
    for (const k of kinds) prepare(k);
    measureAll();
    const own: [DtypeRow['dtype'], GemmKind, string, boolean, string][] = [
      ['float64', 'f64own', `vfmadd231pd (${vec})`, true, ''],
      ['float32', 'f32own', `vfmadd231ps (${vec})`, true, ''],
      ['bfloat16', 'bf16', 'vdpbf16ps (AVX512_BF16)', info.bf16, 'not available on this CPU (no AVX512_BF16)'],
      ['int8', 'i8', 'vpdpbusd (AVX512_VNNI), uint8 x int8 -> int32', info.vnni, 'not available on this CPU (no AVX512_VNNI)'],
    ];
    const ownRows = own.map(([dtype, kind, instruction, available, why]): DtypeRow => {
      const rate = available ? measure(kind) : null;
      return { dtype, impl: 'own', instruction, M, N, K, rate, ratioToFloat32: null, note: rate == null ? why : '' };
    });
    const f32 = ownRows[1].rate;
    for (const r of ownRows) r.ratioToFloat32 = r.rate != null && f32 ? r.rate / f32 : null;
    rows.push(...ownRows);
    if (info.blas === 'openblas') {
      const d = measure('f64blas'), s = measure('f32blas');
      rows.push({ dtype: 'float64', impl: 'openblas', instruction: 'OpenBLAS dgemm', M, N, K, rate: d, ratioToFloat32: d != null && s ? d / s : null, note: '' });
      rows.push({ dtype: 'float32', impl: 'openblas', instruction: 'OpenBLAS sgemm', M, N, K, rate: s, ratioToFloat32: 1, note: '' });
    }
  }
  return rows;
}

/** The dtype rows as a markdown table. */
export function dtypesTable(rows: DtypeRow[]): string {
  return markdownTable(['shape M×N×K', 'dtype', 'kernel', 'instruction', 'GFLOP/s (GOP/s int8)', 'ratio to float32'],
    rows.map((r) => [`${r.M}×${r.N}×${r.K}`, r.dtype, r.impl, r.instruction, r.rate == null ? r.note : fmt(r.rate), r.rate == null ? '–' : `${fmt(r.ratioToFloat32, 2)}x`]));
}
