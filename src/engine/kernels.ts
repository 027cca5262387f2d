// TensorFlow.js kernel functions for the wasm backend that run the native engine on views of the wasm heap (zero copy).
import type * as tfc from '@tensorflow/tfjs-core';
import type { Addon } from './addon.ts';

type Tf = typeof tfc;
type TensorInfo = tfc.TensorInfo;
type KernelFunc = tfc.KernelFunc;

/** The parts of tfjs-backend-wasm's BackendWasm the kernels use. */
export interface WasmBackendLike {
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined; has(dataId: object): boolean };
  wasm: { HEAPU8: Uint8Array };
  makeOutput(shape: number[], dtype: tfc.DataType): TensorInfo;
  refCount(dataId: object): number;
}

/** True when `b` looks like the wasm backend (tensor data lives in one WebAssembly heap). */
export function isWasmBackend(b: unknown): b is WasmBackendLike {
  const w = b as Partial<WasmBackendLike> | null;
  return !!w && typeof w.makeOutput === 'function' && !!w.dataIdMap && typeof w.dataIdMap.has === 'function' && !!w.wasm && w.wasm.HEAPU8 instanceof Uint8Array;
}

const off = (be: WasmBackendLike, t: TensorInfo): number => be.dataIdMap.get(t.dataId)!.memoryOffset;
const heap = (be: WasmBackendLike): ArrayBuffer => be.wasm.HEAPU8.buffer as ArrayBuffer;

/**
 * Move every input onto the wasm heap now. A tensor still held by another backend (e.g. weights a model created on
 * `cpu` before training switched to wasm) migrates lazily on its first `dataIdMap.get`, which mallocs and may grow the
 * heap; growing replaces the heap's ArrayBuffer, so an earlier `heap(be)` (argument order: `gemm(heap(be), off(be, a),
 * ...)`) would be a detached buffer. After this, looking up input offsets allocates nothing, and the kernels take
 * `heap(be)` only after their last allocation (`makeOutput`).
 */
export function makeResident(be: WasmBackendLike, inputs: Record<string, TensorInfo | undefined>): void {
  for (const t of Object.values(inputs)) if (t && t.dtype !== 'string') be.dataIdMap.get(t.dataId);
}
const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Activation code understood by the addon, or null when it must fall back. */
function actCode(activation: unknown): number | null {
  if (activation == null || activation === 'linear') return 0;
  if (activation === 'relu') return 1;
  return null;
}

/** A kernel's args as TensorFlow.js passes them. */
type KArgs = { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: Record<string, unknown> };

/** Kernel functions keyed by kernel name; each falls back to `orig[name]` for cases it does not cover. */
export function makeKernels(tf: Tf, addon: Addon, orig: Record<string, KernelFunc>): Record<string, KernelFunc> {
  const bu = tf.backend_util;
  const fallback = (name: string, args: KArgs): TensorInfo | TensorInfo[] => {
    if (!orig[name]) throw new Error(`slimfit engine: ${name} with these arguments is not supported and the backend has no kernel for it`);
    return orig[name](args as Parameters<KernelFunc>[0]);
  };

  // BatchMatMul and _FusedMatMul (bias of size N, linear/relu); other activations, prelu, int32 -> original kernel.
  function matmul(name: string, args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { a, b, bias, preluActivationWeights } = args.inputs;
    const attrs = args.attrs ?? {};
    const act = actCode(attrs.activation);
    if (!isWasmBackend(be) || !a || !b || a.dtype !== 'float32' || b.dtype !== 'float32' || act === null || preluActivationWeights) return fallback(name, args);
    const ta = !!attrs.transposeA, tb = !!attrs.transposeB;
    const ra = a.shape.length, rb = b.shape.length;
    if (ra < 2 || rb < 2) return fallback(name, args);
    const M = ta ? a.shape[ra - 1] : a.shape[ra - 2], K = ta ? a.shape[ra - 2] : a.shape[ra - 1];
    const K2 = tb ? b.shape[rb - 1] : b.shape[rb - 2], N = tb ? b.shape[rb - 2] : b.shape[rb - 1];
    const batchA = size(a.shape.slice(0, -2)), batchB = size(b.shape.slice(0, -2));
    if (K !== K2 || (batchA !== batchB && batchA !== 1 && batchB !== 1) || M * N === 0) return fallback(name, args);
    if (bias && (bias.dtype !== 'float32' || size(bias.shape) !== N || bias.shape[bias.shape.length - 1] !== N)) return fallback(name, args);
    const batchShape = bu.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    if (size(batchShape) !== Math.max(batchA, batchB)) return fallback(name, args);
    const out = be.makeOutput([...batchShape, M, N], 'float32');
    const batch = Math.max(batchA, batchB);
    addon.gemm(heap(be), +ta, +tb, M, N, K, off(be, a), ta ? M : K, off(be, b), tb ? K : N, off(be, out), N, batch,
      batchA === 1 ? 0 : M * K, batchB === 1 ? 0 : K * N, M * N, bias ? off(be, bias) : -1, act, 0);
    return out;
  }

  function convInfo(xShape: number[], filterShape: number[], attrs: Record<string, unknown>): tfc.backend_util.Conv2DInfo {
    return bu.computeConv2DInfo(xShape as [number, number, number, number], filterShape as [number, number, number, number],
      attrs.strides as [number, number], (attrs.dilations ?? 1) as [number, number], attrs.pad as 'same',
      attrs.dimRoundingMode as 'floor' | undefined, false, 'channelsLast');
  }
  const geom = (c: tfc.backend_util.Conv2DInfo, outChannels = c.outChannels): number[] => [
    c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.filterHeight, c.filterWidth, outChannels, c.outHeight, c.outWidth,
    c.strideHeight, c.strideWidth, c.dilationHeight, c.dilationWidth, c.padInfo.top, c.padInfo.left];
  const nhwc = (attrs: Record<string, unknown>): boolean => attrs.dataFormat == null || attrs.dataFormat === 'NHWC';

  function conv(name: string, args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { x, filter, bias, preluActivationWeights } = args.inputs;
    const attrs = args.attrs ?? {};
    const act = actCode(attrs.activation);
    if (!isWasmBackend(be) || !x || !filter || x.dtype !== 'float32' || act === null || preluActivationWeights || !nhwc(attrs)) return fallback(name, args);
    const c = convInfo(x.shape, filter.shape, attrs);
    if (bias && size(bias.shape) !== c.outChannels) return fallback(name, args);
    if (size(c.outShape) === 0 || size(x.shape) === 0) return fallback(name, args);
    const out = be.makeOutput(c.outShape, 'float32');
    addon.conv2d(heap(be), off(be, x), off(be, filter), off(be, out), bias ? off(be, bias) : -1, act, ...geom(c));
    return out;
  }

  function convBackpropInput(args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { dy, filter } = args.inputs;
    const attrs = args.attrs ?? {};
    if (!isWasmBackend(be) || !dy || !filter || dy.dtype !== 'float32' || !nhwc(attrs)) return fallback('Conv2DBackpropInput', args);
    const inShape = attrs.inputShape as number[];
    const c = convInfo(inShape, filter.shape, { ...attrs, dilations: 1 });
    if (size(inShape) === 0 || size(dy.shape) === 0) return fallback('Conv2DBackpropInput', args);
    const out = be.makeOutput(inShape, 'float32');
    addon.conv2dBackpropInput(heap(be), off(be, dy), off(be, filter), off(be, out), ...geom(c));
    return out;
  }

  function convBackpropFilter(args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { x, dy } = args.inputs;
    const attrs = args.attrs ?? {};
    if (!isWasmBackend(be) || !x || !dy || x.dtype !== 'float32' || !nhwc(attrs)) return fallback('Conv2DBackpropFilter', args);
    const filterShape = attrs.filterShape as number[];
    const c = convInfo(x.shape, filterShape, { ...attrs, dilations: 1 });
    const out = be.makeOutput(filterShape, 'float32');
    addon.conv2dBackpropFilter(heap(be), off(be, x), off(be, dy), off(be, out), ...geom(c));
    return out;
  }

  function poolInfo(xShape: number[], attrs: Record<string, unknown>): tfc.backend_util.Conv2DInfo {
    return bu.computePool2DInfo(xShape as [number, number, number, number], attrs.filterSize as [number, number],
      attrs.strides as [number, number], 1, attrs.pad as 'same', attrs.dimRoundingMode as 'floor' | undefined);
  }

  function maxPool(args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { x } = args.inputs;
    const attrs = args.attrs ?? {};
    if (!isWasmBackend(be) || !x || x.dtype !== 'float32' || x.shape.length !== 4) return fallback('MaxPool', args);
    const c = poolInfo(x.shape, attrs);
    if (size(c.outShape) === 0) return fallback('MaxPool', args);
    const out = be.makeOutput(c.outShape, 'float32');
    addon.maxPool(heap(be), off(be, x), off(be, out), ...geom(c, c.inChannels));
    return out;
  }

  function maxPoolGrad(args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { dy, input } = args.inputs;
    const attrs = args.attrs ?? {};
    if (!isWasmBackend(be) || !dy || !input || input.dtype !== 'float32' || input.shape.length !== 4) return fallback('MaxPoolGrad', args);
    const c = poolInfo(input.shape, attrs);
    const out = be.makeOutput(input.shape, 'float32');
    addon.maxPoolGrad(heap(be), off(be, input), off(be, dy), off(be, out), ...geom(c, c.inChannels));
    return out;
  }

  // Sum over the leading axes (bias gradients: [N*H*W, C] -> [C]); other reductions -> original kernel.
  function sum(args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { x } = args.inputs;
    const attrs = args.attrs ?? {};
    if (!isWasmBackend(be) || !x || x.dtype !== 'float32') return fallback('Sum', args);
    const r = x.shape.length;
    if (attrs.axis == null) return fallback('Sum', args);
    const axes = [...new Set((Array.isArray(attrs.axis) ? attrs.axis : [attrs.axis]).map((a) => ((a as number) + r) % r))].sort((p, q) => p - q);
    const k = axes.length;
    if (k === 0 || k >= r || axes.some((a, i) => a !== i)) return fallback('Sum', args);
    const rows = size(x.shape.slice(0, k)), cols = size(x.shape.slice(k));
    if (rows * cols < 4096) return fallback('Sum', args);
    const outShape = attrs.keepDims ? [...x.shape.slice(0, k).map(() => 1), ...x.shape.slice(k)] : x.shape.slice(k);
    const out = be.makeOutput(outShape, 'float32');
    addon.sumRows(heap(be), off(be, x), rows, cols, off(be, out));
    return out;
  }

  // Zero-copy Identity and same-dtype Cast (the wasm backend copies; the cpu backend shares the buffer like this).
  function identity(name: string, args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend as { incRef?(d: object): void };
    const { x } = args.inputs;
    const to = name === 'Cast' ? (args.attrs ?? {}).dtype : x?.dtype;
    if (!isWasmBackend(be) || !x || typeof be.incRef !== 'function' || x.dtype === 'string' || to !== x.dtype) return fallback(name, args);
    be.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  }

  // Large float32 elementwise ops on both cores: Relu, Step, Add/Multiply of equal shapes or a trailing-vector broadcast.
  const EW_MIN = 1 << 15;
  function unary(name: string, op: number, args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { x } = args.inputs;
    if (!isWasmBackend(be) || !x || x.dtype !== 'float32' || size(x.shape) < EW_MIN) return fallback(name, args);
    const n = size(x.shape);
    const out = be.makeOutput(x.shape, 'float32');
    const alpha = name === 'Step' ? Number((args.attrs ?? {}).alpha ?? 0) : 0;
    addon.elementwise(heap(be), op, off(be, x), -1, off(be, out), n, n, alpha);
    return out;
  }
  function binary(name: string, op: number, args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    let { a, b } = args.inputs;
    if (!isWasmBackend(be) || !a || !b || a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(name, args);
    if (size(b.shape) > size(a.shape)) [a, b] = [b, a]; // both ops commute
    const n = size(a.shape), m = size(b.shape);
    if (n < EW_MIN) return fallback(name, args);
    const same = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b!.shape[i]);
    // trailing broadcast: b's non-1 dims equal a's last dims, e.g. [N,H,W,C] + [C]
    const bDims = b.shape.slice(b.shape.findIndex((d) => d !== 1) < 0 ? b.shape.length : b.shape.findIndex((d) => d !== 1));
    const trailing = b.shape.length <= a.shape.length && bDims.every((d, i) => d === a!.shape[a!.shape.length - bDims.length + i]);
    if (!same && (!trailing || m < 16)) return fallback(name, args); // scalars and tiny periods: wasm is fine
    const out = be.makeOutput(a.shape, 'float32');
    addon.elementwise(heap(be), op, off(be, a), off(be, b), off(be, out), n, same ? n : m, 0);
    return out;
  }

  // [g, db] = ReLU gradient through its output y, and its sum over all but the last axis (src/engine/fused-conv.ts).
  function reluGradBias(args: KArgs): TensorInfo | TensorInfo[] {
    const be = args.backend;
    const { y, dy } = args.inputs;
    if (!isWasmBackend(be) || !y || !dy || y.dtype !== 'float32' || dy.dtype !== 'float32' || size(y.shape) !== size(dy.shape) || y.shape.length < 1) {
      throw new Error('slimfit engine: SlimfitReluGradBias needs float32 y and dy of one shape on the wasm backend');
    }
    const cols = y.shape[y.shape.length - 1], rows = size(y.shape) / Math.max(1, cols);
    const g = be.makeOutput(dy.shape, 'float32');
    const db = be.makeOutput([cols], 'float32');
    addon.reluGradBias(heap(be), off(be, y), off(be, dy), off(be, g), off(be, db), rows, cols);
    return [g, db];
  }

  // Every kernel first makes its inputs resident (see makeResident), so no offset lookup can grow the heap under it.
  const k = (f: (a: KArgs) => TensorInfo | TensorInfo[]): KernelFunc => ((a: KArgs) => {
    if (isWasmBackend(a.backend)) makeResident(a.backend, a.inputs);
    return f(a);
  }) as unknown as KernelFunc;
  return {
    BatchMatMul: k((a) => matmul('BatchMatMul', a)),
    _FusedMatMul: k((a) => matmul('_FusedMatMul', a)),
    Conv2D: k((a) => conv('Conv2D', a)),
    FusedConv2D: k((a) => conv('FusedConv2D', a)),
    SlimfitConv2DBiasAct: k((a) => conv('FusedConv2D', a)),
    SlimfitReluGradBias: k(reluGradBias),
    Conv2DBackpropInput: k(convBackpropInput),
    Conv2DBackpropFilter: k(convBackpropFilter),
    MaxPool: k(maxPool),
    MaxPoolGrad: k(maxPoolGrad),
    Sum: k(sum),
    Identity: k((a) => identity('Identity', a)),
    Cast: k((a) => identity('Cast', a)),
    Relu: k((a) => unary('Relu', 0, a)),
    Step: k((a) => unary('Step', 3, a)),
    Add: k((a) => binary('Add', 1, a)),
    Multiply: k((a) => binary('Multiply', 2, a)),
  };
}
