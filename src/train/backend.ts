// The ONE place that chooses and prepares the TensorFlow.js backend (wasm by default, cpu as fallback), plus missing kernels.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-layers'; // its node bundle registers every op gradient (tfjs-core's node bundle registers none)
import { envSettings } from '../core/config.ts';
import { SlimfitError } from '../core/errors.ts';

/** Backends slimfit can train on. */
export type BackendName = 'wasm' | 'cpu';

/** What {@link initBackend} chose and why. */
export interface BackendInfo {
  name: BackendName;
  /** One line for the user: the choice, the fast engine's status, kernels added. */
  note: string;
  /** Whether the fast engine (src/engine) registered its kernels. */
  engine: boolean;
}

let chosen: Promise<BackendInfo> | null = null;

/** Folder holding the wasm binaries inside the npm package (Node's fetch cannot load relative file paths). */
function wasmDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
}

async function tryWasm(): Promise<string | null> {
  // The emscripten module installs process handlers that rethrow (dumping its minified source); keep ours only.
  const before = { u: process.listeners('uncaughtException'), r: process.listeners('unhandledRejection') };
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // Node: the emscripten loader reads these paths with fs, so plain absolute paths work.
    wasm.setWasmPaths(wasmDir());
    const ok = await tf.setBackend('wasm');
    return ok ? null : 'tf.setBackend(wasm) returned false';
  } catch (e) {
    return (e as Error).message;
  } finally {
    for (const l of process.listeners('uncaughtException')) if (!before.u.includes(l)) process.removeListener('uncaughtException', l);
    for (const l of process.listeners('unhandledRejection')) if (!before.r.includes(l)) process.removeListener('unhandledRejection', l);
  }
}

/**
 * A Conv2DBackpropFilter kernel for the wasm backend (which ships none), computed as one forward conv:
 * dW[i,j,ci,co] = sum_{n,oh,ow} x[n, oh*s+i-pt, ow*s+j-pl, ci] * dy[n,oh,ow,co], i.e. conv2d of x^T [Cin,H,W,N]
 * with dy^T [OH,OW,N,Cout] as filter, dilation = the original stride, explicit padding = the original padding.
 */
export function registerWasmConvFilterGrad(): boolean {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) return false;
  const k = (name: string) => {
    const cfg = tf.getKernel(name, 'wasm');
    if (!cfg) throw new Error(`wasm backend lacks ${name}`);
    return cfg.kernelFunc;
  };
  const transpose = k('Transpose');
  const conv2d = k('Conv2D');
  const slice = k('Slice');
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const a = attrs as unknown as { strides: [number, number] | number; pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding; dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; filterShape: [number, number, number, number] };
      if (a.dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter on wasm supports NHWC only');
      const fs = a.filterShape;
      const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], fs, a.strides, 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
      const p = info.padInfo;
      const b = backend as tf.KernelBackend;
      const tmp: tf.TensorInfo[] = [];
      const run = (f: tf.KernelFunc, ins: tf.NamedTensorInfoMap, at: object): tf.TensorInfo => {
        const out = f({ inputs: ins, backend: b, attrs: at as tf.NamedAttrMap }) as tf.TensorInfo;
        tmp.push(out);
        return out;
      };
      const xT = run(transpose, { x }, { perm: [3, 1, 2, 0] });
      const dyT = run(transpose, { x: dy }, { perm: [1, 2, 0, 3] });
      // Bottom/right padding so the "output" covers at least the filter size; extra rows are sliced off.
      const needH = fs[0] + (info.outHeight - 1) * info.strideHeight - x.shape[1] - p.top;
      const needW = fs[1] + (info.outWidth - 1) * info.strideWidth - x.shape[2] - p.left;
      const explicit = [[0, 0], [p.top, Math.max(0, needH)], [p.left, Math.max(0, needW)], [0, 0]];
      let g = run(conv2d, { x: xT, filter: dyT }, {
        strides: [1, 1], pad: explicit, dataFormat: 'NHWC', dilations: [info.strideHeight, info.strideWidth],
      });
      if (g.shape[1] !== fs[0] || g.shape[2] !== fs[1]) {
        g = run(slice, { x: g }, { begin: [0, 0, 0, 0], size: [fs[2], fs[0], fs[1], fs[3]] });
      }
      const out = transpose({ inputs: { x: g }, backend: b, attrs: { perm: [1, 2, 0, 3] } }) as tf.TensorInfo;
      for (const t of tmp) b.disposeData(t.dataId);
      return out;
    },
  });
  return true;
}

type Conv2DBackpropInputAttrs = { strides: [number, number] | number; pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding; dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; inputShape: [number, number, number, number]; dilations?: [number, number] | number };

/**
 * Replace the wasm backend's Conv2DBackpropInput (a scalar loop, ~10x slower than its XNNPACK forward conv) for
 * stride-1 convolutions: dx = conv2d(dy, filter rotated 180 degrees with in/out channels swapped, "full" padding).
 * Other strides keep the original kernel.
 */
export function registerWasmConvInputGrad(original: tf.KernelFunc): void {
  const k = (name: string) => tf.getKernel(name, 'wasm')!.kernelFunc;
  const transpose = k('Transpose'), conv2d = k('Conv2D'), reverse = k('Reverse');
  tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  tf.registerKernel({
    kernelName: 'Conv2DBackpropInput',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { inputs, backend, attrs } = args;
      const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
      const a = attrs as unknown as Conv2DBackpropInputAttrs;
      const fs = filter.shape as [number, number, number, number];
      const info = tf.backend_util.computeConv2DInfo(a.inputShape, fs, a.strides, 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
      if (a.dataFormat === 'NCHW' || info.strideHeight !== 1 || info.strideWidth !== 1) return original(args);
      const b = backend as tf.KernelBackend;
      const p = info.padInfo;
      const fr = reverse({ inputs: { x: filter }, backend: b, attrs: { dims: [0, 1] } }) as tf.TensorInfo;
      const ft = transpose({ inputs: { x: fr }, backend: b, attrs: { perm: [0, 1, 3, 2] } }) as tf.TensorInfo;
      const explicit = [[0, 0], [fs[0] - 1 - p.top, fs[0] - 1 - p.bottom], [fs[1] - 1 - p.left, fs[1] - 1 - p.right], [0, 0]];
      const out = conv2d({ inputs: { x: dy, filter: ft }, backend: b, attrs: { strides: [1, 1], pad: explicit, dataFormat: 'NHWC', dilations: [1, 1] } }) as tf.TensorInfo;
      b.disposeData(fr.dataId);
      b.disposeData(ft.dataId);
      return out;
    },
  });
}

/** Replace the wasm backend's scalar MaxPoolGrad with a JS loop over the wasm heap (one pass over the pooled windows). */
export function registerWasmMaxPoolGrad(): void {
  tf.unregisterKernel('MaxPoolGrad', 'wasm');
  tf.registerKernel({
    kernelName: 'MaxPoolGrad',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
      const a = attrs as unknown as { filterSize: [number, number] | number; strides: [number, number] | number; pad: 'valid' | 'same' | number; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
      const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
      const b = backend as unknown as { makeOutput(s: number[], d: string): tf.TensorInfo; typedArrayFromHeap(t: tf.TensorInfo): Float32Array; dataIdMap: { get(d: object): unknown } };
      // Inputs still on another backend migrate (malloc) on first lookup: do it before any view exists.
      b.dataIdMap.get(input.dataId); b.dataIdMap.get(dy.dataId);
      const out = b.makeOutput(input.shape, 'float32');
      // Views are taken after makeOutput: growing the heap detaches older views.
      const x = b.typedArrayFromHeap(input), g = b.typedArrayFromHeap(dy), dx = b.typedArrayFromHeap(out);
      dx.fill(0);
      const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
      const pt = info.padInfo.top, pl = info.padInfo.left;
      for (let n = 0; n < N; n++) {
        const xb = n * H * W * C, yb = n * OH * OW * C;
        for (let oh = 0; oh < OH; oh++) {
          const h0 = oh * sh - pt;
          for (let ow = 0; ow < OW; ow++) {
            const w0 = ow * sw - pl;
            const yo = yb + (oh * OW + ow) * C;
            for (let c = 0; c < C; c++) {
              let best = -Infinity, at = -1;
              for (let i = 0; i < fh; i++) {
                const h = h0 + i;
                if (h < 0 || h >= H) continue;
                for (let j = 0; j < fw; j++) {
                  const w = w0 + j;
                  if (w < 0 || w >= W) continue;
                  const idx = xb + (h * W + w) * C + c;
                  if (x[idx] > best || at < 0) { best = x[idx]; at = idx; }
                }
              }
              if (at >= 0) dx[at] += g[yo + c];
            }
          }
        }
      }
      return out;
    },
  });
}

/** Let the fast engine (src/engine) register native kernels; a failure to load it is reported, not thrown. */
async function tryEngine(name: BackendName): Promise<{ active: boolean; note: string }> {
  let engine: typeof import('../engine/index.ts');
  try {
    engine = await import('../engine/index.ts');
  } catch (e) {
    return { active: false, note: `fast engine failed to load: ${(e as Error).message.split('\n')[0]}` };
  }
  try {
    return engine.installEngine(tf, name);
  } catch (e) {
    return { active: false, note: `fast engine failed: ${(e as Error).message.split('\n')[0]}` };
  }
}

/**
 * Choose and initialize the backend once per process: `wasm` (XNNPACK, SIMD) unless it cannot start, else `cpu`;
 * `force` (or else SLIMFIT_BACKEND) picks one. Registers the kernels the wasm backend lacks and the fast engine.
 */
export function initBackend(force?: string): Promise<BackendInfo> {
  let want: string | undefined;
  try {
    want = force ?? envSettings().backend ?? undefined;
  } catch (e) {
    return Promise.reject(e);
  }
  if (want !== undefined && want !== 'wasm' && want !== 'cpu') {
    return Promise.reject(new SlimfitError(`unknown backend '${want}'`, { hint: 'use --backend wasm or --backend cpu' }));
  }
  if (chosen) return chosen;
  chosen = (async () => {
    // Production mode: no console banners ("install tfjs-node") or re-registration warnings in CLI output.
    tf.enableProdMode();
    let name: BackendName = 'cpu';
    let why = '';
    if (want !== 'cpu') {
      const err = await tryWasm();
      if (err === null) name = 'wasm';
      else if (want === 'wasm') throw new SlimfitError(`the wasm backend does not start here: ${err}`, { hint: 'use --backend cpu' });
      else why = ` (wasm unavailable: ${err})`;
    }
    if (name === 'cpu') await tf.setBackend('cpu');
    await tf.ready();
    const before = name === 'wasm' ? { ci: tf.getKernel('Conv2DBackpropInput', 'wasm')!.kernelFunc, mp: tf.getKernel('MaxPoolGrad', 'wasm')!.kernelFunc } : null;
    const eng = await tryEngine(name);
    let added = '';
    if (before) {
      if (registerWasmConvFilterGrad()) added += '; added Conv2DBackpropFilter';
      // Keep any kernel the fast engine replaced; otherwise swap the two slow scalar kernels for faster ones.
      if (tf.getKernel('Conv2DBackpropInput', 'wasm')?.kernelFunc === before.ci) { registerWasmConvInputGrad(before.ci); added += ', faster Conv2DBackpropInput'; }
      if (tf.getKernel('MaxPoolGrad', 'wasm')?.kernelFunc === before.mp) { registerWasmMaxPoolGrad(); added += ', MaxPoolGrad'; }
    }
    const note = `backend: ${name}${why}${want ? ' (forced)' : ''}${added}; ${eng.note}`;
    return { name, note, engine: eng.active };
  })();
  chosen.catch(() => { chosen = null; });
  return chosen;
}

/** Kernels that training the given layer types needs but the active backend lacks (empty when all are there). */
export function missingKernels(names: readonly string[]): string[] {
  const b = tf.getBackend();
  return names.filter((n) => !tf.getKernel(n, b));
}

export { tf };
