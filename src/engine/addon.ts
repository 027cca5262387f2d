// The native engine addon (slimfit_engine.node: compiled by `npm install` into build/Release, or the package's
// prebuild), found and loaded by src/core/native.ts; SLIMFIT_DISABLE=engine turns it off.
import { addonStatus, whyOff } from '../core/native.ts';
import { type NativeSettings, nativeSettings } from '../core/config.ts';

/** The float32 GEMM mode: the own kernels, OpenBLAS or oneDNN throughout, or auto: the linked library (oneDNN before OpenBLAS) with convolutions on the own kernels' tiles (see gemmUsesBlas). */
export type GemmMode = 'own' | 'openblas' | 'onednn' | 'auto';

/** Facts about the loaded addon. */
export interface AddonInfo { blas: 'onednn' | 'openblas' | 'own'; openblas: boolean; onednn: boolean; isa: 'avx512' | 'avx2' | 'generic'; threads: number; bf16: boolean; vnni: boolean; forceOwn: boolean; gemm: GemmMode }

/** GEMM variants of gemmDtype: current choice, OpenBLAS only, or the own kernels. */
export type GemmKind = 'f64' | 'f32' | 'f64blas' | 'f32blas' | 'f64own' | 'f32own' | 'bf16' | 'i8';

/** The bf16 GEMM kernels (native/gemm_bf16.cc): AMX tiles (TDPBF16PS) or AVX512_BF16 (VDPBF16PS). */
export type Bf16Kernel = 'amx' | 'avx512bf16';
/** What bf16Info() reports: the kernel the bf16 mode uses ('none': the mode is unavailable), and why AMX is not used. */
export interface Bf16Info { kernel: Bf16Kernel | 'none'; avx512bf16: boolean; amx: boolean; amxNote: string }

/** Any buffer the addon accepts: an ArrayBuffer (e.g. the wasm heap) or a typed array. */
export type Buf = ArrayBuffer | ArrayBufferView;

/** The native functions (see native/addon.cc); offsets are byte offsets into `buf`, -1 for an absent operand. */
export interface Addon {
  gemm(buf: Buf, ta: number, tb: number, M: number, N: number, K: number, aOff: number, lda: number, bOff: number, ldb: number,
    cOff: number, ldc: number, batch: number, strideA: number, strideB: number, strideC: number, biasOff: number, act: number, beta: number): void;
  conv2d(buf: Buf, xOff: number, wOff: number, yOff: number, biasOff: number, act: number, ...geom: number[]): void;
  conv2dBackpropInput(buf: Buf, dyOff: number, wOff: number, dxOff: number, ...geom: number[]): void;
  conv2dBackpropFilter(buf: Buf, xOff: number, dyOff: number, dwOff: number, ...geom: number[]): void;
  maxPool(buf: Buf, xOff: number, yOff: number, ...geom: number[]): void;
  maxPoolGrad(buf: Buf, xOff: number, dyOff: number, dxOff: number, ...geom: number[]): void;
  adam(buf: Buf, n: number, pOff: number, mOff: number, vOff: number, gOff: number, lr: number, beta1: number, beta2: number,
    eps: number, oneMinusAccBeta1: number, oneMinusAccBeta2: number, oneMinusBeta1: number, oneMinusBeta2: number): void;
  /** Fused Dense-chain training step (see native/dense_step.h); plan and out are described in native/addon.cc. */
  denseStep(heap: ArrayBuffer, x: Float32Array, y: Float32Array, batch: number, plan: Float64Array, out: Float64Array, gradOff?: number, precision?: number): void;
  /** Fused conv-net training step (see native/conv_step.h); plan, out and prof are described in native/addon.cc. */
  convStep(heap: ArrayBuffer, x: Float32Array, y: Float32Array, batch: number, plan: Float64Array, out: Float64Array, prof?: Float64Array, noFusedPool?: number, gradOff?: number): void;
  elementwise(buf: Buf, op: number, aOff: number, bOff: number, yOff: number, n: number, m: number, alpha: number): void;
  sumRows(buf: Buf, xOff: number, rows: number, cols: number, outOff: number): void;
  /** g = (y > 0 ? dy : 0) and db = column sums of g (dbOff -1: none). */
  reluGradBias(buf: Buf, yOff: number, dyOff: number, gOff: number, dbOff: number, rows: number, cols: number): void;
  /** Whole-array GEMM C = A·B for the dtype benchmark; false when the CPU lacks the instruction. */
  gemmDtype(kind: GemmKind, M: number, N: number, K: number, A: Buf, B: Buf, C: Buf): boolean;
  /** C = op(A)·op(B) on whole Float32Arrays with bf16 operands and float32 accumulation; kind '' = the best kernel. False when that kernel is not available. */
  gemmBf16(kind: Bf16Kernel | '', ta: number, tb: number, M: number, N: number, K: number, A: Float32Array, B: Float32Array, C: Float32Array): boolean;
  /** The bf16 kernels this CPU and OS allow (the first call asks Linux for the AMX tile state). */
  bf16Info(): Bf16Info;
  /** The kernel the bf16 mode uses from now on ('' = the best; one this CPU lacks is ignored); returns the one in use. For tests and benchmarks. */
  setBf16Kernel(kind: Bf16Kernel | ''): Bf16Kernel | 'none';
  setForceOwn(on: boolean): void;
  /** Switch the float32 GEMM mode ('' = the default); returns the mode now in use (the default when the mode's library is not linked). For benchmarks and tests. */
  setGemmMode(mode: GemmMode | ''): GemmMode;
  /** Whether a float32 GEMM of this shape goes to the library (oneDNN or OpenBLAS) under the current mode (a fixed rule by shape). */
  gemmUsesBlas(ta: number, tb: number, M: number, N: number, K: number): boolean;
  /** Settings from the environment (src/core/config.ts); must come before the first kernel or info() call. */
  configure(s: NativeSettings): void;
  info(): AddonInfo;
}

let cached: { addon: Addon | null; note: string } | null = null;

/** The addon, or null with a one-line note saying why it is unavailable (throws only a SlimfitError for a malformed SLIMFIT_* variable). */
export function loadAddon(): { addon: Addon | null; note: string } {
  if (cached) return cached;
  const s = addonStatus('slimfit_engine');
  const addon = s.module as Addon | null;
  if (!addon) {
    cached = { addon: null, note: `native engine ${whyOff(s)}` };
    return cached;
  }
  const settings = nativeSettings(); // a malformed SLIMFIT_* variable is the user's error, not a failed load
  try {
    addon.configure(settings);
    const i = addon.info();
    cached = { addon, note: `native engine (${s.from}): ${gemmModeLabel(i)} GEMM, ${i.isa}, ${i.threads} thread${i.threads === 1 ? '' : 's'}` };
  } catch (e) {
    cached = { addon: null, note: `native engine failed to start (${(e as Error).message.split('\n')[0]})` };
  }
  return cached;
}

/** How notes name the GEMM mode: 'own', 'OpenBLAS', 'oneDNN', or '<library> (own conv tiles)' (the default with a library linked). */
export function gemmModeLabel(i: AddonInfo): string {
  const lib = i.blas === 'onednn' ? 'oneDNN' : 'OpenBLAS';
  return i.gemm === 'own' ? 'own' : i.gemm === 'openblas' ? 'OpenBLAS' : i.gemm === 'onednn' ? 'oneDNN' : `${lib} (own conv tiles)`;
}
