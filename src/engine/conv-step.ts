// The fused training step for conv nets (the built-in cnn and two-branch, and models like them): chains of Conv2D
// (relu/linear), MaxPooling2D, Flatten and Dense layers, or such branches from the input joined by one Concatenate
// before a Dense head; softmax output, categoricalCrossentropy and Adam; trained in one native call per batch
// (native/conv_step.cc) on the engine's own kernels, so it computes what trainOnBatch computes on the engine
// without tfjs's per-op dispatch and tensor allocation. Anything else (batch norm, dropout, regularizers, other layers)
// gets a reason instead, and the caller trains that model with trainOnBatch.
import type * as tfc from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { adamAdvance, type AdamInternals } from './adam.ts';
import { adamFromGradients, beginFusedStep, fusedStepCandidate, newFusedStepMemo } from './fused-common.ts';
import { loadAddon } from './addon.ts';
import type { DenseStep, DenseStepResult } from './dense-step.ts';

type Tf = typeof tfc;

interface LayerVar { read(): tfc.Variable }
interface LayerLike {
  getClassName(): string;
  trainable: boolean;
  inboundNodes: { inboundLayers: unknown[] }[];
  dataFormat?: string;
  activation?: { getClassName(): string } | null;
  kernel?: LayerVar | null; bias?: LayerVar | null; units?: number; filters?: number;
  kernelSize?: number[]; strides?: number[]; padding?: string; dilationRate?: number | number[]; poolSize?: number[];
  kernelRegularizer?: unknown; biasRegularizer?: unknown; activityRegularizer?: unknown; kernelConstraint?: unknown; biasConstraint?: unknown;
  input: { shape: (number | null)[] } | unknown;
  output: { shape: (number | null)[] } | unknown;
  axis?: number;
}
const ACT: Record<string, number> = { linear: 0, relu: 1, softmax: 2 };
const KIND = { conv: 0, pool: 1, dense: 2 } as const;
/** Doubles per layer in the native plan (see ConvStep in native/addon.cc). */
const PER = 26;

interface Planned {
  kind: number; act: number; inSize: number; outSize: number;
  /** N, H, W, C, KH, KW, OC, OH, OW, sh, sw, dh, dw, pt, pl (N unused). */
  geom: number[];
  kernel: LayerVar | null; bias: LayerVar | null;
  /** Index of the chain (branch, or the head after a Concatenate) the layer belongs to. */
  chain: number;
}

const shapeOf = (t: unknown): (number | null)[] => (t as { shape: (number | null)[] }).shape;
const size = (s: (number | null)[]): number => s.slice(1).reduce<number>((a, b) => a * Number(b), 1);

const inbound = (l: LayerLike): LayerLike[] => (l.inboundNodes[0]?.inboundLayers ?? []) as LayerLike[];

/**
 * The model's layers as chains in training order: [chain] for a plain chain from the input to the output, or each
 * branch of the one Concatenate (over the last axis of flat inputs) back to the input, then the head after it; a
 * string says why the graph is not of that form.
 */
function toChains(layers: LayerLike[], outLayer: LayerLike): LayerLike[][] | string {
  const input = layers.filter((l) => l.getClassName() === 'InputLayer');
  if (input.length > 1) return 'several inputs';
  for (const l of layers) {
    if (l.getClassName() === 'InputLayer') continue;
    if (l.inboundNodes.length !== 1) return `layer ${l.getClassName()} is shared`;
    const inb = inbound(l);
    if (l.getClassName() === 'Concatenate') {
      const axis = l.axis ?? -1;
      const rank = shapeOf(l.output).length;
      if (rank !== 2 || (axis !== -1 && axis !== 1) || inb.length < 2) return 'a Concatenate other than of flat features';
    } else if (inb.length !== 1) {
      return `layer ${l.getClassName()} has several inputs`;
    }
  }
  const used = new Set<LayerLike>();
  // walk back from `from` to the input (or a Concatenate), collecting layers in forward order
  const walk = (from: LayerLike): LayerLike[] | string => {
    const chain: LayerLike[] = [];
    let l: LayerLike | undefined = from;
    while (l && l.getClassName() !== 'InputLayer' && l.getClassName() !== 'Concatenate') {
      if (used.has(l)) return 'a layer output used twice';
      used.add(l);
      chain.unshift(l);
      l = inbound(l)[0];
    }
    return chain;
  };
  const head = walk(outLayer);
  if (typeof head === 'string') return head;
  const first = head[0] ? inbound(head[0])[0] : outLayer;
  let chains: LayerLike[][];
  if (first && first.getClassName() === 'Concatenate') {
    used.add(first);
    chains = [];
    for (const b of inbound(first)) {
      const br = walk(b);
      if (typeof br === 'string') return br;
      if (br.length && inbound(br[0])[0] && inbound(br[0])[0].getClassName() !== 'InputLayer') return 'Concatenate of Concatenates';
      chains.push(br);
    }
    chains.push(head);
  } else {
    chains = [head];
  }
  if (layers.some((l) => l.getClassName() !== 'InputLayer' && !used.has(l))) return 'layers do not form a chain';
  return chains;
}

/** Options of {@link convTrainStep}. */
export interface ConvStepOptions {
  /**
   * Data-parallel training (as in DenseStepOptions): the step computes the batch's gradients into one buffer (each
   * Conv2D / Dense layer's kernel then bias, in training order), hands it to `reduce` (e.g. an MPI all-reduce that
   * averages it in place), then applies Adam with the reduced gradients.
   */
  reduce?: (grads: Float32Array) => void;
  /** Floats after the gradients in the buffer `reduce` gets, for the caller's own values (default 0). */
  extraFloats?: number;
  /** Adds the CPU seconds of the calling thread per phase to this array (4 per layer + 2, see native/conv_step.h). */
  profile?: Float64Array;
  /** Run a first conv layer and the max pool after it as two kernels, not the fused one (for tests and profiling). */
  separateKernels?: boolean;
}

/**
 * The fused step for `model` when it is a chain of Conv2D / MaxPooling2D / Flatten / Dense layers (or branches of
 * them from the input, concatenated before Dense layers), with at least one Conv2D, compiled with categoricalCrossentropy and Adam on the engine's wasm backend, else the reason it has none.
 * The result has the shape of {@link denseTrainStep}'s, so the trainer uses either the same way.
 *
 * @example
 * const r = convTrainStep(tf, model, engineActive());
 * if (r.step) { const [loss, acc] = r.step(x, yOneHot, n) ?? await model.trainOnBatch(xs, ys); }
 */
export function convTrainStep(tf: Tf, model: tfl.LayersModel, engineActive: boolean, opts: ConvStepOptions = {}): DenseStepResult {
  const no = (reason: string): DenseStepResult => ({ step: null, reason });
  const c = fusedStepCandidate<LayerLike>(tf, model, engineActive, 'convStep', ['fused', 'fused-cnn'], 'fused conv step');
  if ('reason' in c) return no(c.reason);
  const { m, opt, metrics } = c;
  const addon = loadAddon().addon!; // fusedStepCandidate checked it has the kernel
  const bu = tf.backend_util;
  // The graph as chains: one for a sequential model; for a Concatenate, one branch per input back to the model's input
  // plus the head from the Concatenate to the output. Every other layer must have exactly one inbound layer.
  const outLayer = (m.outputs[0] as { sourceLayer?: LayerLike }).sourceLayer ?? m.layers[m.layers.length - 1];
  const chains = toChains(m.layers, outLayer);
  if (typeof chains === 'string') return no(chains);
  const planned: Planned[] = [];
  let inputSize = 0;
  for (let ci = 0; ci < chains.length; ci++) {
    let sawDense = false, chainLen = 0;
    const isHead = chains.length > 1 && ci === chains.length - 1;
    for (const layer of chains[ci]) {
      const kind = layer.getClassName();
      const inShape = shapeOf(layer.input);
      if (ci === 0 && !planned.length && !inputSize) inputSize = size(inShape);
      if (kind === 'Reshape') {
        // row-major data is unchanged by a reshape; only a branch's first layer may be one (the built-in models on [h, w] samples)
        if (chainLen || isHead) return no('Reshape after the first layer');
        continue;
      }
      if (kind === 'Flatten') {
        if (layer.dataFormat === 'channelsFirst') return no('channelsFirst Flatten');
        continue;
      }
      if (kind !== 'Conv2D' && kind !== 'MaxPooling2D' && kind !== 'Dense') return no(`layer ${kind} has no fused step`);
      if (kind !== 'MaxPooling2D') {
        if (!layer.trainable) return no('a frozen layer');
        if (layer.kernelRegularizer || layer.biasRegularizer || layer.activityRegularizer || layer.kernelConstraint || layer.biasConstraint) return no('regularizers or constraints');
      }
      const act = kind === 'MaxPooling2D' ? 0 : ACT[layer.activation?.getClassName() ?? 'linear'];
      if (act === undefined) return no(`activation ${layer.activation?.getClassName()}`);
      chainLen++;
      if (kind === 'Dense') {
        if (!layer.kernel || inShape.length !== 2) return no('Dense on a rank > 2 input');
        sawDense = true;
        planned.push({ kind: KIND.dense, act, inSize: Number(inShape[1]), outSize: Number(layer.units), geom: new Array(15).fill(0), kernel: layer.kernel, bias: layer.bias ?? null, chain: ci });
        continue;
      }
      if (sawDense || isHead) return no(`${kind} after a Dense layer or a Concatenate`);
      if (layer.dataFormat !== 'channelsLast') return no(`${kind} with dataFormat ${layer.dataFormat}`);
      if (inShape.length !== 4 || inShape.slice(1).some((d) => !(Number(d) >= 1))) return no(`${kind} input shape is not [h, w, c]`);
      const x4 = [1, Number(inShape[1]), Number(inShape[2]), Number(inShape[3])] as [number, number, number, number];
      const pad = layer.padding;
      if (pad !== 'valid' && pad !== 'same') return no(`${kind} padding ${pad}`);
      const strides = layer.strides as [number, number];
      if (kind === 'Conv2D') {
        const dil = layer.dilationRate;
        if (!(dil === undefined || dil === 1 || (Array.isArray(dil) && dil.every((d) => d === 1)))) return no('dilated Conv2D');
        if (!layer.kernel) return no('Conv2D without a kernel');
        const ks = layer.kernelSize as number[];
        const c = bu.computeConv2DInfo(x4, [ks[0], ks[1], x4[3], Number(layer.filters)], strides, 1, pad, undefined, false, 'channelsLast');
        planned.push({
          kind: KIND.conv, act, inSize: size(inShape), outSize: c.outHeight * c.outWidth * c.outChannels, kernel: layer.kernel, bias: layer.bias ?? null, chain: ci,
          geom: [0, c.inHeight, c.inWidth, c.inChannels, c.filterHeight, c.filterWidth, c.outChannels, c.outHeight, c.outWidth, c.strideHeight, c.strideWidth, 1, 1, c.padInfo.top, c.padInfo.left],
        });
      } else {
        const c = bu.computePool2DInfo(x4, layer.poolSize as [number, number], strides, 1, pad);
        planned.push({
          kind: KIND.pool, act: 0, inSize: size(inShape), outSize: c.outHeight * c.outWidth * c.inChannels, kernel: null, bias: null, chain: ci,
          geom: [0, c.inHeight, c.inWidth, c.inChannels, c.filterHeight, c.filterWidth, c.inChannels, c.outHeight, c.outWidth, c.strideHeight, c.strideWidth, 1, 1, c.padInfo.top, c.padInfo.left],
        });
      }
      if (size(shapeOf(layer.output)) !== planned[planned.length - 1].outSize) return no(`${kind} output size differs from its geometry`);
    }
    if (!chainLen) return no('a branch without Conv2D, MaxPooling2D or Dense layers');
  }
  if (!planned.some((p) => p.kind === KIND.conv)) return no('no Conv2D layer');
  const nL = planned.length;
  if (planned[nL - 1].kind !== KIND.dense || planned.some((p, i) => (p.act === 2) !== (i === nL - 1))) return no('softmax only on the last Dense layer');
  // sizes: within a chain each layer takes the previous one's output; branches take the input; the head their outputs
  const nChains = chains.length;
  const firstOf = (c: number): Planned => planned.find((p) => p.chain === c)!;
  const lastOf = (c: number): Planned => planned.filter((p) => p.chain === c).pop()!;
  let branchOut = 0;
  for (let c = 0; c < nChains - 1; c++) branchOut += lastOf(c).outSize;
  for (let c = 0; c < nChains; c++) {
    const want = nChains > 1 && c === nChains - 1 ? branchOut : inputSize;
    if (firstOf(c).inSize !== want) return no('layer sizes do not chain');
  }
  if (planned.some((p, i) => i > 0 && p.chain === planned[i - 1].chain && p.inSize !== planned[i - 1].outSize)) return no('layer sizes do not chain');
  const order = m.collectedTrainableWeights;
  const vars = planned.flatMap((p) => (p.kernel ? (p.bias ? [p.kernel, p.bias] : [p.kernel]) : []));
  if (order.length !== vars.length || vars.some((v) => !order.includes(v))) return no('trainable weights are not exactly the Conv2D and Dense kernels and biases');
  const index = (v: LayerVar): number => order.indexOf(v);
  const plan = new Float64Array(9 + PER * nL);
  const out = new Float64Array(2);
  const classes = planned[nL - 1].outSize;
  const acc = metrics.length === 1;
  for (let l = 0; l < nL; l++) {
    const p = planned[l], q = 9 + PER * l;
    plan[q] = p.kind; plan[q + 1] = p.act; plan[q + 2] = p.inSize; plan[q + 3] = p.outSize;
    for (let k = 0; k < 15; k++) plan[q + 4 + k] = p.geom[k];
    for (let k = 19; k < 25; k++) plan[q + k] = -1;
    plan[q + 25] = p.chain;
  }
  const profile = opts.profile ?? new Float64Array(0);
  const separate = opts.separateKernels ? 1 : 0;
  const reduce = opts.reduce;
  const trained = planned.filter((p) => p.kernel);
  const sizes = trained.flatMap((p) => {
    const nw = p.kind === KIND.conv ? p.geom[4] * p.geom[5] * p.geom[3] * p.geom[6] : p.inSize * p.outSize;
    const nb = p.kind === KIND.conv ? p.geom[6] : p.outSize;
    return p.bias ? [nw, nb] : [nw];
  });
  const total = sizes.reduce((a, b) => a + b, 0);
  const extra = opts.extraFloats ?? 0;
  // With reduce: room on the wasm heap for every gradient (so the native Adam can address it like the weights).
  const gradBuf: tfc.Tensor | null = reduce ? tf.zeros([total + extra]) : null;

  const memo = newFusedStepMemo();
  const step: DenseStep = (x, y, n) => {
    const start = beginFusedStep(tf, opt, order, x, y, n, inputSize, classes, plan, nL, memo);
    if (!start) return null;
    const { be, values, off, same } = start;
    // the offsets written at the previous call still hold when every weight and moment is where it was then
    if (!same) for (let l = 0; l < nL; l++) {
      const p = planned[l], q = 9 + PER * l;
      if (!p.kernel) continue;
      const wi = index(p.kernel), bi = p.bias ? index(p.bias) : -1;
      plan[q + 19] = off(values[wi]);
      plan[q + 20] = bi >= 0 ? off(values[bi]) : -1;
      plan[q + 21] = off(opt.accumulatedFirstMoment[wi].variable);
      plan[q + 22] = off(opt.accumulatedSecondMoment[wi].variable);
      plan[q + 23] = bi >= 0 ? off(opt.accumulatedFirstMoment[bi].variable) : -1;
      plan[q + 24] = bi >= 0 ? off(opt.accumulatedSecondMoment[bi].variable) : -1;
    }
    // the heap is read after every offset lookup above (a lookup can grow it)
    if (!gradBuf) {
      addon.convStep(be.wasm.HEAPU8.buffer as ArrayBuffer, x, y, n, plan, out, profile, separate);
    } else {
      const gOff = off(gradBuf);
      const heap = be.wasm.HEAPU8.buffer as ArrayBuffer;
      addon.convStep(heap, x, y, n, plan, out, profile, separate, gOff);
      reduce!(new Float32Array(heap, gOff, total + extra));
      const tensors = planned.flatMap((p, l) => {
        const q = 9 + PER * l;
        return p.kernel ? [[plan[q + 19], plan[q + 21], plan[q + 22]], [plan[q + 20], plan[q + 23], plan[q + 24]]] : [];
      });
      adamFromGradients(addon, heap, gOff, tensors, sizes, opt, plan);
    }
    adamAdvance(tf, opt);
    return [out[0], acc ? out[1] / n : NaN];
  };
  return { step, inputSize, classes, precision: 'float32', dispose: () => gradBuf?.dispose() };
}
