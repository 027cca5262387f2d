// A fused Adam step: one native pass per variable updates weights, m and v in place on the wasm heap.
import type * as tfc from '@tensorflow/tfjs-core';
import type { Addon } from './addon.ts';
import { isWasmBackend } from './kernels.ts';

type Tf = typeof tfc;
type NamedGrads = tfc.NamedTensorMap | { name: string; tensor: tfc.Tensor }[];

/** Internals of tfjs-core's AdamOptimizer that the fused step reads and updates (same names as the library). */
export interface AdamInternals {
  learningRate: number; beta1: number; beta2: number; epsilon: number;
  accBeta1: tfc.Variable; accBeta2: tfc.Variable;
  accumulatedFirstMoment: { originalName: string; variable: tfc.Variable }[];
  accumulatedSecondMoment: { originalName: string; variable: tfc.Variable }[];
  incrementIterations(): void;
  applyGradients(g: NamedGrads): void;
}

const PATCHED = Symbol.for('slimfit.engine.adam');

/** Counts of Adam steps taken by the fused path and by the library's own path (tests and benchmarks read these). */
export const adamStats = { fused: 0, library: 0, lastReason: '' };

// The latest install's switch (the prototype is patched once; later installs only replace this).
let current: { enabled: () => boolean; backendName: string } = { enabled: () => false, backendName: '' };

/**
 * Make tf.AdamOptimizer use the fused native update while `enabled()` is true and the active backend is `backendName`.
 * Falls back to the library's own update for any step where a tensor is not a private float32 wasm buffer.
 */
export function patchAdam(tf: Tf, addon: Addon, backendName: string, enabled: () => boolean): boolean {
  const proto = (tf as unknown as { AdamOptimizer?: { prototype: AdamInternals & { [PATCHED]?: boolean } } }).AdamOptimizer?.prototype;
  if (!proto || typeof proto.applyGradients !== 'function') return false;
  current = { enabled, backendName };
  if (proto[PATCHED]) return true;
  const original = proto.applyGradients;
  proto.applyGradients = function (this: AdamInternals, variableGradients: NamedGrads): void {
    if (current.enabled() && tf.getBackend() === current.backendName && fusedStep(tf, addon, this, variableGradients)) {
      adamStats.fused++;
      return;
    }
    adamStats.library++;
    original.call(this, variableGradients);
  };
  proto[PATCHED] = true;
  return true;
}

function reject(reason: string): false {
  adamStats.lastReason = reason;
  return false;
}

/** One fused Adam step; returns false (having changed nothing) when some tensor is not eligible. */
function fusedStep(tf: Tf, addon: Addon, opt: AdamInternals, grads: NamedGrads): boolean {
  const be = tf.backend() as unknown as { refCount?(d: object): number };
  if (!isWasmBackend(be) || typeof be.refCount !== 'function') return reject('backend');
  const names = Array.isArray(grads) ? grads.map((g) => g.name) : Object.keys(grads);
  const engine = tf.engine();
  const items: { value: tfc.Variable; grad: tfc.Tensor; i: number }[] = [];
  for (let i = 0; i < names.length; i++) {
    const value = engine.registeredVariables[names[i]];
    const grad = Array.isArray(grads) ? grads[i].tensor : grads[names[i]];
    if (grad == null) continue;
    if (!value || value.dtype !== 'float32' || grad.dtype !== 'float32' || value.size !== grad.size) return reject('dtype');
    be.dataIdMap.get(value.dataId); // migrate a variable still on `cpu` first: refCount counts wasm buffers only
    if (be.refCount(value.dataId) !== 1) return reject('shared variable');
    const m = opt.accumulatedFirstMoment[i]?.variable, v = opt.accumulatedSecondMoment[i]?.variable;
    if ((m && be.refCount(m.dataId) !== 1) || (v && be.refCount(v.dataId) !== 1)) return reject('shared moment');
    items.push({ value, grad, i });
  }
  ensureMoments(tf, opt, items.map(({ value, i }) => ({ name: names[i], value, i })));
  const { oma1, oma2, c1, c2 } = adamConstants(opt, tf);
  // All offsets first: looking one up migrates a tensor another backend holds (weights created on `cpu` before the
  // switch to wasm), which may grow the heap and detach an ArrayBuffer taken earlier; the heap is read after the last one.
  const o = (t: tfc.Tensor): number => be.dataIdMap.get(t.dataId)!.memoryOffset;
  const offs = items.map(({ value, grad, i }) => [o(value), o(opt.accumulatedFirstMoment[i].variable), o(opt.accumulatedSecondMoment[i].variable), o(grad)]);
  const buf = be.wasm.HEAPU8.buffer as ArrayBuffer;
  items.forEach(({ value }, j) => {
    const [p, m, v, g] = offs[j];
    addon.adam(buf, value.size, p, m, v, g, opt.learningRate, opt.beta1, opt.beta2, opt.epsilon, oma1, oma2, c1, c2);
  });
  adamAdvance(tf, opt);
  return true;
}

/** Create the first/second moment variables of the variables at positions `i` as the library does (so getWeights/setWeights keep working). */
export function ensureMoments(tf: Tf, opt: AdamInternals, vars: { name: string; value: tfc.Variable; i: number }[]): void {
  for (const { name, value, i } of vars) {
    if (opt.accumulatedFirstMoment[i] == null) opt.accumulatedFirstMoment[i] = { originalName: `${name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
    if (opt.accumulatedSecondMoment[i] == null) opt.accumulatedSecondMoment[i] = { originalName: `${name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
  }
}

/**
 * This step's float32 constants, as tfjs computes them: 1 - beta1^t, 1 - beta2^t, 1 - beta1, 1 - beta2 (beta^t read
 * straight from the wasm heap when `tf` is given and its backend is wasm).
 *
 * @example
 * const { oma1, oma2, c1, c2 } = adamConstants(optimizer, tf);
 */
export function adamConstants(opt: AdamInternals, tf?: Tf): { oma1: number; oma2: number; c1: number; c2: number } {
  const s1 = tf ? privateHeapScalar(tf, opt.accBeta1) : null, s2 = s1 && tf ? privateHeapScalar(tf, opt.accBeta2) : null;
  return {
    oma1: Math.fround(1 - (s1 && s2 ? s1.heap[s1.index] : opt.accBeta1.dataSync()[0])),
    oma2: Math.fround(1 - (s1 && s2 ? s2.heap[s2.index] : opt.accBeta2.dataSync()[0])),
    c1: Math.fround(1 - opt.beta1),
    c2: Math.fround(1 - opt.beta2),
  };
}

/** End of a step, as the library ends it: beta^t advances (in place on the wasm heap when no other tensor shares it) and the iteration count goes up. */
export function adamAdvance(tf: Tf, opt: AdamInternals): void {
  const s1 = privateHeapScalar(tf, opt.accBeta1), s2 = s1 ? privateHeapScalar(tf, opt.accBeta2) : null;
  if (s1 && s2) {
    // in place, the same float32 product tf.mul computes (a double product of two floats rounds once to float32)
    s1.heap[s1.index] = Math.fround(s1.heap[s1.index] * Math.fround(opt.beta1));
    s2.heap[s2.index] = Math.fround(s2.heap[s2.index] * Math.fround(opt.beta2));
  } else {
    tf.tidy(() => {
      opt.accBeta1.assign(tf.mul(opt.accBeta1, opt.beta1));
      opt.accBeta2.assign(tf.mul(opt.accBeta2, opt.beta2));
    });
  }
  opt.incrementIterations();
}

/**
 * A float32 scalar variable's place in the wasm heap when the active backend is wasm and no other tensor shares its
 * buffer (an in-place write then changes only this variable, as its assign would), else null. Reading and writing it
 * there skips ~35 µs of tensor bookkeeping per step (two dataSync reads, two multiplies and assigns in a tidy).
 */
function privateHeapScalar(tf: Tf, v: tfc.Variable): { heap: Float32Array; index: number } | null {
  const be = tf.backend();
  if (!isWasmBackend(be) || v.isDisposed || v.dtype !== 'float32' || v.size !== 1) return null;
  const d = be.dataIdMap.get(v.dataId);
  if (!d || be.refCount(v.dataId) !== 1 || d.memoryOffset % 4 !== 0) return null;
  const buf = be.wasm.HEAPU8.buffer;
  if (heapView?.buffer !== buf) heapView = new Float32Array(buf, 0, be.wasm.HEAPU8.byteLength >> 2);
  return { heap: heapView, index: d.memoryOffset >> 2 };
}
/** privateHeapScalar's float32 view of the heap, made again when the heap grows (a new buffer). */
let heapView: Float32Array | null = null;
