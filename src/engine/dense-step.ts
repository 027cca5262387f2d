// A fused training step for the most common model: a chain of Dense layers (relu or linear hidden, softmax output)
// trained with categorical cross-entropy and Adam. One native call does forward, loss, backward and the Adam update
// in place on the model's own variables (on the wasm heap), with the same formulas tfjs's autodiff and AdamOptimizer
// use, so the tf.layers model, its optimizer state, predict/evaluate/save keep working unchanged. Why: at batch 128 an
// MLP step through tfjs autodiff spends longer in per-op bookkeeping (~110 kernel calls) than in its GEMMs.
// Any other model (or optimizer, loss, metric, regularizer, dtype, backend) gets null and trains through trainOnBatch.
import type * as tfc from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { adamAdvance, type AdamInternals } from './adam.ts';
import { adamFromGradients, beginFusedStep, fusedStepCandidate, newFusedStepMemo } from './fused-common.ts';
import { type Bf16Kernel, loadAddon } from './addon.ts';
import { SlimfitError } from '../core/errors.ts';

type Tf = typeof tfc;

/** Trains one batch: x [n, features] and y [n, classes] (one-hot) as float32; [loss, accuracy] like trainOnBatch, or null (nothing changed) when this batch must go through trainOnBatch. */
export type DenseStep = (x: Float32Array, y: Float32Array, n: number) => [number, number] | null;

/**
 * Precision of the step's matrix products: 'float32', or 'bf16' mixed precision (opt-in): each GEMM's operands
 * rounded to bfloat16 (round to nearest even), products accumulated in float32; weights, Adam, bias, activations,
 * softmax and loss stay float32 (PyTorch's CPU autocast to bfloat16 for Linear layers does the same products).
 */
export type MatmulPrecision = 'float32' | 'bf16';
/** The precisions {@link denseTrainStep} takes. */
export const MATMUL_PRECISIONS: readonly MatmulPrecision[] = ['float32', 'bf16'];

/** A fused step for `model`, or the reason it cannot have one; `kernel` names the bf16 GEMM kernel in bf16 mode. */
export type DenseStepResult = { step: DenseStep; inputSize: number; classes: number; precision: MatmulPrecision; kernel?: Bf16Kernel; dispose(): void; reason?: undefined } | { step: null; reason: string };

/**
 * The bf16 GEMM kernel this machine runs ('amx' or 'avx512bf16'), or a SlimfitError saying which instructions are
 * missing and to use float32. Throws the same error when the native engine is not built.
 *
 * @example
 * const kernel = bf16Kernel(); // 'amx' on a Sapphire Rapids Xeon with Linux >= 5.16
 */
export function bf16Kernel(): Bf16Kernel {
  const { addon, note } = loadAddon();
  if (!addon) throw new SlimfitError(`matmul precision bf16 needs the native engine (${note})`, { hint: 'build it (npm run build:native) or use matmul precision float32' });
  if (typeof addon.bf16Info !== 'function') throw new SlimfitError('matmul precision bf16 needs a native engine built from this version, and the one loaded predates it', { hint: 'rebuild it (npm run build:native) or use matmul precision float32' });
  const i = addon.bf16Info();
  if (i.kernel === 'none') {
    throw new SlimfitError('matmul precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16, and this one has neither', { hint: 'use matmul precision float32 (the default)' });
  }
  return i.kernel;
}

/** Options of {@link denseTrainStep}. */
export interface DenseStepOptions {
  /**
   * Data-parallel training: the step computes the batch's gradients into one buffer (every Dense layer's kernel then
   * bias, in layer order), hands it to `reduce` (e.g. an MPI all-reduce that averages it over the ranks, in place),
   * and then applies Adam with the reduced gradients. Without it, gradients go straight into Adam inside the native call.
   */
  reduce?: (grads: Float32Array) => void;
  /** Floats after the gradients in the buffer `reduce` gets, for the caller's own values to reduce with them (default 0). */
  extraFloats?: number;
  /** Precision of the matrix products (default 'float32'); 'bf16' throws a SlimfitError on a CPU without bf16 instructions. */
  matmulPrecision?: MatmulPrecision;
}

interface LayerVar { read(): tfc.Variable }
interface LayerLike {
  getClassName(): string;
  trainable: boolean;
  inboundNodes: { inboundLayers: unknown[] }[];
  dataFormat?: string;
  activation?: { getClassName(): string } | null;
  kernel?: LayerVar | null; bias?: LayerVar | null; units?: number;
  kernelRegularizer?: unknown; biasRegularizer?: unknown; activityRegularizer?: unknown; kernelConstraint?: unknown; biasConstraint?: unknown;
  inputSpec?: unknown;
  input: { shape: (number | null)[] } | unknown;
}
const ACT: Record<string, number> = { linear: 0, relu: 1, softmax: 2 };

/** The fused step for `model` when it is a Dense chain compiled with categoricalCrossentropy and Adam on the engine's wasm backend. */
export function denseTrainStep(tf: Tf, model: tfl.LayersModel, engineActive: boolean, opts: DenseStepOptions = {}): DenseStepResult {
  const no = (reason: string): DenseStepResult => ({ step: null, reason });
  const precision = opts.matmulPrecision ?? 'float32';
  if (!MATMUL_PRECISIONS.includes(precision)) throw new SlimfitError(`matmulPrecision must be 'float32' or 'bf16', got ${JSON.stringify(precision)}`);
  // SLIMFIT_DISABLE=fused compares against tfjs autodiff without code changes (callers' own switch: the loop's `fused`).
  const c = fusedStepCandidate<LayerLike>(tf, model, engineActive, 'denseStep', ['fused'], 'fused step');
  if ('reason' in c) return no(c.reason);
  const { m, opt, metrics } = c;
  const addon = loadAddon().addon!; // fusedStepCandidate checked it has the kernel
  const dense: { kernel: LayerVar; bias: LayerVar | null; act: number; inDim: number; units: number }[] = [];
  let prev: LayerLike | null = null;
  for (const layer of m.layers) {
    const kind = layer.getClassName();
    if (kind === 'InputLayer') { prev = layer; continue; }
    if (layer.inboundNodes.length !== 1 || layer.inboundNodes[0].inboundLayers.length !== 1) return no(`layer ${kind} is shared or has several inputs`);
    if (prev && layer.inboundNodes[0].inboundLayers[0] !== prev) return no('layers do not form a chain');
    prev = layer;
    if (kind === 'Flatten') {
      if (layer.dataFormat === 'channelsFirst') return no('channelsFirst Flatten');
      if (dense.length) return no('Flatten after a Dense layer');
      continue;
    }
    if (kind !== 'Dense') return no(`layer ${kind} has no fused step`);
    if (!layer.trainable) return no('a frozen layer');
    if (layer.kernelRegularizer || layer.biasRegularizer || layer.activityRegularizer || layer.kernelConstraint || layer.biasConstraint) return no('regularizers or constraints');
    const act = ACT[layer.activation?.getClassName() ?? 'linear'];
    if (act === undefined) return no(`activation ${layer.activation?.getClassName()}`);
    const shape = (layer.input as { shape: (number | null)[] }).shape;
    if (!layer.kernel || shape.length !== 2) return no('Dense on a rank > 2 input');
    dense.push({ kernel: layer.kernel, bias: layer.bias ?? null, act, inDim: Number(shape[1]), units: Number(layer.units) });
  }
  if (!dense.length || dense.some((d, i) => (d.act === 2) !== (i === dense.length - 1))) return no('softmax only on the last Dense layer');
  if (prev !== null && m.layers[m.layers.length - 1] !== prev) return no('layers do not form a chain');
  // The optimizer's moments are indexed by position in the list trainOnBatch passes: collectedTrainableWeights.
  const order = m.collectedTrainableWeights;
  const vars = dense.flatMap((d) => (d.bias ? [d.kernel, d.bias] : [d.kernel]));
  if (order.length !== vars.length || vars.some((v) => !order.includes(v))) return no('trainable weights are not exactly the Dense kernels and biases');
  const index = (v: LayerVar): number => order.indexOf(v);
  const nL = dense.length;
  const plan = new Float64Array(9 + 9 * nL);
  const out = new Float64Array(2);
  const inDim = dense[0].inDim, classes = dense[nL - 1].units;
  const acc = metrics.length === 1;
  const reduce = opts.reduce;
  // With reduce: room on the wasm heap for every gradient (so the native Adam can address it like the weights).
  const sizes = dense.flatMap((d) => (d.bias ? [d.inDim * d.units, d.units] : [d.inDim * d.units]));
  const total = sizes.reduce((a, b) => a + b, 0);
  const extra = opts.extraFloats ?? 0;
  // Checked only once the model qualifies: a model that trains through trainOnBatch gets its reason, not this one.
  const kernel = precision === 'bf16' ? bf16Kernel() : undefined;
  const prec = precision === 'bf16' ? 1 : 0;
  const gradBuf: tfc.Tensor | null = reduce ? tf.zeros([total + extra]) : null;

  const memo = newFusedStepMemo();
  const step: DenseStep = (x, y, n) => {
    const start = beginFusedStep(tf, opt, order, x, y, n, inDim, classes, plan, nL, memo);
    if (!start) return null;
    const { be, values, off, same } = start;
    // the offsets written at the previous call still hold when every weight and moment is where it was then
    if (!same) for (let l = 0; l < nL; l++) {
      const d = dense[l], q = 9 + 9 * l;
      const wi = index(d.kernel), bi = d.bias ? index(d.bias) : -1;
      plan[q] = d.inDim; plan[q + 1] = d.units; plan[q + 2] = d.act;
      plan[q + 3] = off(values[wi]);
      plan[q + 4] = bi >= 0 ? off(values[bi]) : -1;
      plan[q + 5] = off(opt.accumulatedFirstMoment[wi].variable);
      plan[q + 6] = off(opt.accumulatedSecondMoment[wi].variable);
      plan[q + 7] = bi >= 0 ? off(opt.accumulatedFirstMoment[bi].variable) : -1;
      plan[q + 8] = bi >= 0 ? off(opt.accumulatedSecondMoment[bi].variable) : -1;
    }
    // The heap is read after every offset lookup above: a lookup can migrate a weight still on `cpu` and grow the heap.
    if (!gradBuf) {
      addon.denseStep(be.wasm.HEAPU8.buffer as ArrayBuffer, x, y, n, plan, out, -1, prec);
    } else {
      const gOff = off(gradBuf);
      const heap = be.wasm.HEAPU8.buffer as ArrayBuffer;
      addon.denseStep(heap, x, y, n, plan, out, gOff, prec);
      reduce!(new Float32Array(heap, gOff, total + extra));
      const tensors = dense.flatMap((_, l) => { const q = 9 + 9 * l; return [[plan[q + 3], plan[q + 5], plan[q + 6]], [plan[q + 4], plan[q + 7], plan[q + 8]]]; });
      adamFromGradients(addon, heap, gOff, tensors, sizes, opt, plan);
    }
    adamAdvance(tf, opt);
    return [out[0], acc ? out[1] / n : NaN];
  };
  return { step, inputSize: inDim, classes, precision, ...(kernel ? { kernel } : {}), dispose: () => gradBuf?.dispose() };
}
