// The start every fused training step shares (dense-step.ts, conv-step.ts): the batch checked, the model's weights as
// live wasm tensors in trainOnBatch's order, Adam's moments created as the library creates them, and the 9-double
// Adam header of the native plan written with tfjs's own float32 constants.
import type * as tfc from '@tensorflow/tfjs-core';
import { disabledBy, type Feature, featureEnabled } from '../core/config.ts';
import { adamConstants, type AdamInternals, ensureMoments } from './adam.ts';
import { type Addon, loadAddon } from './addon.ts';
import { alignTensors } from './heap-align.ts';
import { isWasmBackend, type WasmBackendLike } from './kernels.ts';

type Tf = typeof tfc;

/**
 * What a step needs after its preamble: the wasm backend, the weights' tensors, a tensor's offset in the wasm heap, and
 * `same`: every weight and moment is the very buffer it was at the previous call with the same memo, so the offsets the
 * caller wrote into its plan then still hold.
 */
export interface FusedStepStart { be: WasmBackendLike; values: tfc.Variable[]; off: (t: tfc.Tensor) => number; same: boolean }

type TensorData = { memoryOffset: number; refCount?: number };

/**
 * What one fused step remembers between its calls (beginFusedStep's `memo`): the backend, and for every tensor it
 * updates in place (weight i, its first moment, its second moment) the variable, its data id, the backend's record of
 * that data and the data's offset in the heap, as the last full check left them.
 */
export interface FusedStepMemo { be: WasmBackendLike | null; vars: tfc.Variable[]; ids: object[]; datas: (TensorData | undefined)[]; offsets: number[] }

/** An empty memo for beginFusedStep: one per step function. */
export function newFusedStepMemo(): FusedStepMemo {
  return { be: null, vars: [], ids: [], datas: [], offsets: [] };
}

/** The tensors a step updates in place, in the memo's order: weight i, then its first and second moment (undefined: not created yet). */
function updatedInPlace(values: tfc.Variable[], opt: AdamInternals): (tfc.Variable | undefined)[] {
  const out: (tfc.Variable | undefined)[] = [];
  for (let i = 0; i < values.length; i++) out.push(values[i], opt.accumulatedFirstMoment[i]?.variable, opt.accumulatedSecondMoment[i]?.variable);
  return out;
}

/**
 * True when the weights and moments are exactly those the memo holds and still safe to update in place: the same
 * variables, not disposed, holding the same data, which the backend still keeps under the same record at the same
 * offset (another step function aligning the same tensors moves them inside that record), and which no other tensor
 * shares. One lookup per tensor instead of the full check's several.
 */
function memoHolds(memo: FusedStepMemo, be: WasmBackendLike, values: tfc.Variable[], opt: AdamInternals): boolean {
  if (memo.be !== be) return false;
  const all = updatedInPlace(values, opt);
  if (all.length !== memo.vars.length) return false;
  for (let k = 0; k < all.length; k++) {
    const t = all[k];
    if (!t || t !== memo.vars[k] || t.isDisposed || t.dataId !== memo.ids[k]) return false;
    // has() first: get() would try to fetch data the backend no longer holds (tf.disposeVariables frees the data of
    // variables it does not mark disposed), and the full check says what is wrong
    const d = be.dataIdMap.has(t.dataId) ? (be.dataIdMap.get(t.dataId) as TensorData | undefined) : undefined;
    if (!d || d !== memo.datas[k] || d.memoryOffset !== memo.offsets[k] || d.refCount !== 1) return false;
  }
  return true;
}

/**
 * Check a batch, read the weights and fill plan[0..8] (layers, lr, beta1, beta2, eps, 1-beta1^t, 1-beta2^t, 1-beta1,
 * 1-beta2). Returns null when a weight shares its buffer with another tensor: an in-place update would show through
 * it, so the caller takes trainOnBatch for this batch. Throws on a bad batch or a backend/weight that changed.
 * `memo` (newFusedStepMemo, one per step function, always with the same plan): a call whose weights and moments are
 * still the ones the previous full check passed (memoHolds) skips the rest of that check and says so with `same`; the
 * caller then keeps the offsets it wrote into the plan after that check (so it must write them whenever `same` is false).
 *
 * @example
 * const memo = newFusedStepMemo();
 * const s = beginFusedStep(tf, opt, model.collectedTrainableWeights, x, y, n, 784, 10, plan, layers, memo);
 * if (!s) return null; // trainOnBatch this time
 */
export function beginFusedStep(tf: Tf, opt: AdamInternals, order: { read(): tfc.Variable }[], x: Float32Array, y: Float32Array, n: number,
  inputSize: number, classes: number, plan: Float64Array, layers: number, memo: FusedStepMemo): FusedStepStart | null {
  if (!(x instanceof Float32Array) || !(y instanceof Float32Array)) throw new Error('fused step: x and y must be Float32Arrays');
  if (!(n > 0) || x.length < n * inputSize || y.length < n * classes) throw new Error(`fused step: batch of ${n} needs x of ${n * inputSize} and y of ${n * classes} floats`);
  const be = tf.backend();
  if (!isWasmBackend(be)) throw new Error('fused step: the backend changed away from wasm');
  const values = order.map((v) => v.read());
  const same = memoHolds(memo, be, values, opt);
  if (!same) {
    memo.be = null;
    const engine = tf.engine() as unknown as { registeredVariables: Record<string, tfc.Variable> };
    for (const v of values) {
      if (v.dtype !== 'float32' || v.isDisposed || engine.registeredVariables[v.name] !== v) throw new Error(`fused step: weight ${v.name} is not a live float32 variable`);
      // A weight created on `cpu` before the switch to wasm moves here now; unmoved, refCount would say 0 and the first
      // step would go through trainOnBatch (a numerically different path) for no reason.
      be.dataIdMap.get(v.dataId);
      // in-place updates must not show through another tensor sharing the buffer (tfjs's own update would not)
      if (be.refCount(v.dataId) !== 1) return null;
    }
    ensureMoments(tf, opt, values.map((value, i) => ({ name: value.name, value, i })));
    // the moments too are updated in place: one that shares its buffer (e.g. with the tensors given to the optimizer's
    // setWeights) takes trainOnBatch, whose Adam gives it a buffer of its own
    for (let i = 0; i < values.length; i++)
      if (be.refCount(opt.accumulatedFirstMoment[i].variable.dataId) !== 1 || be.refCount(opt.accumulatedSecondMoment[i].variable.dataId) !== 1) return null;
    // Adam streams the weights and both moments in place every step: on whole cache lines (a no-op once they are)
    const all = updatedInPlace(values, opt) as tfc.Variable[]; // ensureMoments created every moment
    alignTensors(be, all);
    memo.vars = all;
    memo.ids = all.map((t) => t.dataId);
    memo.datas = all.map((t) => be.dataIdMap.get(t.dataId) as TensorData | undefined);
    memo.offsets = memo.datas.map((d) => d?.memoryOffset ?? -1);
    memo.be = be;
  }
  const { oma1, oma2, c1, c2 } = adamConstants(opt, tf);
  plan[0] = layers; plan[1] = opt.learningRate; plan[2] = opt.beta1; plan[3] = opt.beta2; plan[4] = opt.epsilon;
  plan[5] = oma1; plan[6] = oma2; plan[7] = c1; plan[8] = c2;
  return { be, values, off: (t) => be.dataIdMap.get(t.dataId)!.memoryOffset, same };
}

/** The training state a fused step reads from a compiled model (a Sequential keeps it on its inner LayersModel). */
export interface CompiledModel<L> {
  layers: L[];
  inputs: unknown[]; outputs: { shape: (number | null)[] }[];
  loss: unknown; metrics: unknown; optimizer: unknown;
  collectedTrainableWeights: { read(): tfc.Variable }[];
}

/**
 * The checks every fused step makes before it looks at the layers: the `features` are not disabled, the engine is
 * active and its addon has `kernel`, the backend is wasm, and the model has one input and one output, categorical
 * cross-entropy, at most the accuracy metric and tfjs's own Adam. Returns the model's training state, its Adam
 * internals and the metric list, or the reason there is no fused step (`what` names the step in that reason).
 *
 * @example
 * const c = fusedStepCandidate<LayerLike>(tf, model, engineActive, 'denseStep', ['fused'], 'fused step');
 * if ('reason' in c) return { step: null, reason: c.reason };
 */
export function fusedStepCandidate<L>(tf: Tf, model: unknown, engineActive: boolean, kernel: 'denseStep' | 'convStep', features: readonly Feature[], what: string):
  { m: CompiledModel<L>; opt: AdamInternals; metrics: unknown[] } | { reason: string } {
  for (const f of features) if (!featureEnabled(f)) return { reason: `disabled by ${disabledBy(f)}` };
  if (!engineActive) return { reason: 'the fast engine is not active' };
  const { addon } = loadAddon();
  if (!addon || typeof (addon as unknown as Record<string, unknown>)[kernel] !== 'function') return { reason: `the native engine has no ${what}` };
  if (!isWasmBackend(tf.backend())) return { reason: 'backend is not wasm' };
  const outer = model as CompiledModel<L> & { model?: CompiledModel<L>; getClassName?(): string };
  const inner = outer.model && outer.getClassName?.() === 'Sequential' ? outer.model : outer;
  const m: CompiledModel<L> = {
    layers: outer.layers, inputs: inner.inputs, outputs: inner.outputs, loss: inner.loss, metrics: inner.metrics,
    optimizer: inner.optimizer, collectedTrainableWeights: inner.collectedTrainableWeights,
  };
  if (m.inputs.length !== 1 || m.outputs.length !== 1) return { reason: 'not a single-input, single-output model' };
  if (m.loss !== 'categoricalCrossentropy' && m.loss !== 'categorical_crossentropy') return { reason: 'loss is not categoricalCrossentropy' };
  const metrics = m.metrics == null ? [] : Array.isArray(m.metrics) ? m.metrics : null;
  if (!metrics || metrics.some((x) => x !== 'accuracy' && x !== 'acc') || metrics.length > 1) return { reason: "metrics other than ['accuracy']" };
  const opt = m.optimizer as AdamInternals | null;
  if (!opt || (opt as { constructor?: unknown }).constructor !== (tf as unknown as { AdamOptimizer: unknown }).AdamOptimizer) return { reason: 'optimizer is not Adam' };
  return { m, opt, metrics };
}

/**
 * Adam on each tensor from a buffer of gradients laid out one tensor after another on the wasm heap (a fused step's
 * gradients-only mode, after they were all-reduced). `tensors` are [weight, first moment, second moment] heap offsets
 * in the buffer's order (weight < 0: no such tensor, skipped), `sizes` their element counts; the step constants are
 * those beginFusedStep wrote into plan[5..8].
 *
 * @example
 * adamFromGradients(addon, heap, gOff, [[wOff, mOff, vOff]], [784 * 512], opt, plan);
 */
export function adamFromGradients(addon: Addon, heap: ArrayBuffer, gOff: number, tensors: number[][], sizes: number[], opt: AdamInternals, plan: Float64Array): void {
  let g = gOff, k = 0;
  for (const [w, m, v] of tensors) {
    if (w < 0) continue;
    addon.adam(heap, sizes[k], w, m, v, g, opt.learningRate, opt.beta1, opt.beta2, opt.epsilon, plan[5], plan[6], plan[7], plan[8]);
    g += 4 * sizes[k++];
  }
}
