// Export a tfjs layers model as an ONNX file (opset 13) for inference elsewhere (onnxruntime, TensorRT, OpenVINO...).
// tfjs keeps images NHWC; ONNX's Conv, pools and BatchNormalization want NCHW. The graph input stays NHWC (the user's
// data as the loader delivers it); a value is transposed to channels-first only where such an op needs it and back
// only where a layer needs tfjs's order (Flatten, Dense, Reshape, the outputs), so Flatten's order is tfjs's exactly.
import { rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import pb from 'protobufjs/light.js';
import type * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { SlimfitError } from '../core/errors.ts';
import { writeAtomic } from '../core/write-atomic.ts';
import { ATTR, ONNX_FLOAT, ONNX_INT64, ONNX_PROTO_JSON } from './onnx-schema.ts';

/** The ONNX operator set the exported graphs use (default domain). */
export const ONNX_OPSET = 13;
/** ONNX IR version that goes with opset 13. */
const IR_VERSION = 7;

/** Layer classes {@link exportOnnx} converts (Dropout-like layers are the identity at inference, as in tfjs's predict). */
export const ONNX_LAYERS = [
  'InputLayer', 'Dense', 'Conv2D', 'MaxPooling2D', 'AveragePooling2D', 'GlobalMaxPooling2D', 'GlobalAveragePooling2D',
  'Flatten', 'Reshape', 'Concatenate', 'Dropout', 'SpatialDropout1D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout',
  'BatchNormalization', 'Activation', 'ReLU', 'LeakyReLU', 'ELU', 'Softmax',
] as const;
/** Activation names (tfjs `activation:` values) {@link exportOnnx} converts. */
export const ONNX_ACTIVATIONS = ['linear', 'relu', 'relu6', 'elu', 'selu', 'sigmoid', 'hardSigmoid', 'tanh', 'softplus', 'softsign', 'softmax', 'logSoftmax', 'swish', 'mish', 'gelu'] as const;

const IDENTITY_LAYERS = new Set(['Dropout', 'SpatialDropout1D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout']);

type Attr = { f: number } | { i: number } | { ints: number[] } | { floats: number[] } | { s: string };
type Shape = Array<number | null>;

/**
 * A value of the ONNX graph for one tfjs tensor. `cf`: the ONNX tensor holds the tfjs tensor with its last axis
 * (channels) moved to axis 1 (NHWC -> NCHW); otherwise its axes are tfjs's. `shape` is tfjs's (batch first).
 */
interface Value { name: string; shape: Shape; cf: boolean; other?: Value }

let messages: { Model: pb.Type } | null = null;
function modelType(): pb.Type {
  messages ??= { Model: pb.Root.fromJSON(ONNX_PROTO_JSON as unknown as pb.INamespace).lookupType('onnx.ModelProto') };
  return messages.Model;
}

/** Float32 values as little-endian bytes (TensorProto.raw_data). */
function rawFloats(a: Float32Array): Uint8Array {
  const out = new Uint8Array(a.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) dv.setFloat32(i * 4, a[i], true);
  return out;
}

/** Permute an array laid out with `shape` by `perm` (numpy's transpose). */
function transposeData(a: Float32Array, shape: number[], perm: number[]): Float32Array {
  const r = shape.length;
  const outShape = perm.map((p) => shape[p]);
  const inStride = new Array<number>(r);
  for (let i = r - 1, s = 1; i >= 0; i--) { inStride[i] = s; s *= shape[i]; }
  const step = perm.map((p) => inStride[p]);
  const out = new Float32Array(a.length);
  const idx = new Array<number>(r).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = a[src];
    for (let k = r - 1; k >= 0; k--) {
      idx[k]++; src += step[k];
      if (idx[k] < outShape[k]) break;
      src -= step[k] * idx[k]; idx[k] = 0;
    }
  }
  return out;
}

/** The graph under construction: nodes, initializers and unique names. */
class Graph {
  readonly nodes: object[] = [];
  readonly inits: object[] = [];
  private readonly names = new Set<string>();

  /** A fresh value name from `base` (ONNX names are free text; kept readable). */
  unique(base: string): string {
    let n = base, k = 1;
    while (this.names.has(n)) n = `${base}_${k++}`;
    this.names.add(n);
    return n;
  }

  node(op: string, inputs: string[], name: string, attrs: Record<string, Attr> = {}): string {
    const out = this.unique(name);
    const attribute = Object.entries(attrs).map(([k, v]) => {
      if ('f' in v) return { name: k, type: ATTR.FLOAT, f: v.f };
      if ('i' in v) return { name: k, type: ATTR.INT, i: v.i };
      if ('ints' in v) return { name: k, type: ATTR.INTS, ints: v.ints };
      if ('floats' in v) return { name: k, type: ATTR.FLOATS, floats: v.floats };
      return { name: k, type: ATTR.STRING, s: new TextEncoder().encode(v.s) };
    });
    this.nodes.push({ input: inputs, output: [out], name: out, op_type: op, attribute });
    return out;
  }

  floats(name: string, dims: number[], data: Float32Array): string {
    const n = this.unique(name);
    this.inits.push({ name: n, dims, data_type: ONNX_FLOAT, raw_data: rawFloats(data) });
    return n;
  }

  int64s(name: string, values: number[]): string {
    const n = this.unique(name);
    this.inits.push({ name: n, dims: [values.length], data_type: ONNX_INT64, int64_data: values });
    return n;
  }
}

/** What a converter gets: the layer, its config, the graph, and the value of each input. */
interface Ctx { layer: tfl.layers.Layer; cls: string; cfg: Record<string, unknown>; g: Graph; outShape: Shape }

function unsupported(layer: tfl.layers.Layer, cls: string, what: string): SlimfitError {
  return new SlimfitError(`cannot export layer '${layer.name}' (class ${cls}) to ONNX: ${what}`, {
    hint: `supported layers: ${ONNX_LAYERS.filter((l) => l !== 'InputLayer').join(', ')}; activations: ${ONNX_ACTIVATIONS.join(', ')}`,
  });
}

/** Permutation taking a tfjs-order tensor of rank r to channels-first (last axis to 1), and its inverse. */
const toCfPerm = (r: number) => [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];
const toTfPerm = (r: number) => [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1];

/** `v` in tfjs's axis order (a Transpose when it is channels-first; made once per value). */
function tfOrder(g: Graph, v: Value): Value {
  if (!v.cf) return v;
  v.other ??= { name: g.node('Transpose', [v.name], `${v.name}_nhwc`, { perm: { ints: toTfPerm(v.shape.length) } }), shape: v.shape, cf: false, other: v };
  return v.other;
}

/** `v` channels-first (a Transpose when it is in tfjs's order; made once per value). Rank >= 3 only. */
function cfOrder(g: Graph, v: Value): Value {
  if (v.cf) return v;
  v.other ??= { name: g.node('Transpose', [v.name], `${v.name}_nchw`, { perm: { ints: toCfPerm(v.shape.length) } }), shape: v.shape, cf: true, other: v };
  return v.other;
}

/** The ONNX axis of tfjs axis `axis` (negative counts from the end) of value `v`. */
function onnxAxis(v: Value, axis: number): number {
  const r = v.shape.length;
  const a = axis < 0 ? axis + r : axis;
  if (!v.cf || a === 0) return a;
  return a === r - 1 ? 1 : a + 1;
}

/** Apply tfjs activation `name` to `v` (same layout out as in). */
function activation(c: Ctx, v: Value, name: string, alpha?: number): Value {
  const { g } = c;
  const base = c.layer.name;
  const one = (op: string, attrs: Record<string, Attr> = {}) => ({ ...v, other: undefined, name: g.node(op, [v.name], `${base}_${op.toLowerCase()}`, attrs) });
  switch (name) {
    case 'linear': return v;
    case 'relu': return one('Relu');
    case 'sigmoid': return one('Sigmoid');
    case 'tanh': return one('Tanh');
    case 'softplus': return one('Softplus');
    case 'softsign': return one('Softsign');
    case 'elu': return one('Elu', { alpha: { f: alpha ?? 1 } });
    // tfjs's constants (tfjs-core selu_util): scale*alpha = 1.7580993408473768, scale = 1.0507009873554805
    case 'selu': return one('Selu', { alpha: { f: 1.7580993408473768 / 1.0507009873554805 }, gamma: { f: 1.0507009873554805 } });
    // tfjs: clip(0.2 x + 0.5, 0, 1)
    case 'hardSigmoid': return one('HardSigmoid', { alpha: { f: 0.2 }, beta: { f: 0.5 } });
    case 'softmax': return one('Softmax', { axis: { i: onnxAxis(v, -1) } });
    case 'logSoftmax': return one('LogSoftmax', { axis: { i: onnxAxis(v, -1) } });
    case 'relu6': return { ...v, other: undefined, name: g.node('Clip', [v.name, g.floats(`${base}_min`, [], new Float32Array([0])), g.floats(`${base}_max`, [], new Float32Array([6]))], `${base}_relu6`) };
    case 'swish': {
      const s = g.node('Sigmoid', [v.name], `${base}_sigmoid`);
      return { ...v, other: undefined, name: g.node('Mul', [v.name, s], `${base}_swish`) };
    }
    case 'mish': {
      const sp = g.node('Softplus', [v.name], `${base}_softplus`);
      const t = g.node('Tanh', [sp], `${base}_tanh`);
      return { ...v, other: undefined, name: g.node('Mul', [v.name, t], `${base}_mish`) };
    }
    case 'gelu': {
      // tfjs: x * 0.5 * (1 + erf(x / sqrt(2)))
      const e = g.node('Erf', [g.node('Div', [v.name, g.floats(`${base}_sqrt2`, [], new Float32Array([Math.SQRT2]))], `${base}_scaled`)], `${base}_erf`);
      const h = g.node('Mul', [g.node('Add', [e, g.floats(`${base}_one`, [], new Float32Array([1]))], `${base}_erf1`), g.floats(`${base}_half`, [], new Float32Array([0.5]))], `${base}_cdf`);
      return { ...v, other: undefined, name: g.node('Mul', [v.name, h], `${base}_gelu`) };
    }
    default: throw unsupported(c.layer, c.cls, `activation '${name}' has no ONNX conversion here`);
  }
}

/** The layer's weight whose name ends in `/suffix` (tfjs names them `<layer>/kernel`, `<layer>/bias`, ...). */
function weight(c: Ctx, suffix: string): { data: Float32Array; shape: number[] } | null {
  const w = c.layer.weights.find((x) => (x.originalName ?? x.name).split('/').pop()?.replace(/_\d+$/, '') === suffix);
  if (!w) return null;
  const t = w.read() as tf.Tensor;
  if (t.dtype !== 'float32') throw unsupported(c.layer, c.cls, `weight '${w.name}' is ${t.dtype}, not float32`);
  return { data: t.dataSync() as Float32Array, shape: t.shape };
}

function needWeight(c: Ctx, suffix: string): { data: Float32Array; shape: number[] } {
  const w = weight(c, suffix);
  if (!w) throw unsupported(c.layer, c.cls, `its weight '${suffix}' was not found`);
  return w;
}

const pair = (v: unknown, fallback: number[]): number[] => (v == null ? fallback : Array.isArray(v) ? v.map(Number) : [Number(v), Number(v)]);

/** Conv/pool padding as ONNX attributes: TF's 'same' puts the odd pixel after (SAME_UPPER), written out when sizes are known. */
function padAttrs(c: Ctx, padding: unknown, inHW: Shape, kernel: number[], strides: number[], dil: number[]): Record<string, Attr> {
  if (padding === 'valid' || padding == null) return {};
  if (padding !== 'same') throw unsupported(c.layer, c.cls, `padding '${String(padding)}' (only 'valid' and 'same' are converted)`);
  if (inHW.some((d) => d == null)) return { auto_pad: { s: 'SAME_UPPER' } };
  const before: number[] = [], after: number[] = [];
  for (let i = 0; i < 2; i++) {
    const n = inHW[i] as number, s = strides[i], k = (kernel[i] - 1) * dil[i] + 1;
    const total = Math.max((Math.ceil(n / s) - 1) * s + k - n, 0);
    before.push(Math.floor(total / 2)); after.push(total - Math.floor(total / 2));
  }
  return { pads: { ints: [...before, ...after] } };
}

/** Spatial input sizes [h, w] and the value in the layout the op needs (channels-first for channelsLast layers). */
function spatialInput(c: Ctx, x: Value): { v: Value; hw: Shape } {
  if (x.shape.length !== 4) throw unsupported(c.layer, c.cls, `it takes 4-D input [batch, h, w, c], got rank ${x.shape.length}`);
  const first = c.cfg.dataFormat === 'channelsFirst';
  // channelsFirst layers already see NCHW in tfjs's own order: they need the value untransposed.
  return first ? { v: tfOrder(c.g, x), hw: [x.shape[2], x.shape[3]] } : { v: cfOrder(c.g, x), hw: [x.shape[1], x.shape[2]] };
}

function outValue(c: Ctx, name: string, cf: boolean): Value {
  return { name, shape: c.outShape, cf };
}

function convert(c: Ctx, ins: Value[]): Value {
  const { g, cfg, layer, cls } = c;
  const base = layer.name;
  const x = ins[0];
  if (IDENTITY_LAYERS.has(cls)) return x;
  switch (cls) {
    case 'Dense': {
      const v = tfOrder(g, x);
      const k = needWeight(c, 'kernel');
      let y = g.node('MatMul', [v.name, g.floats(`${base}_kernel`, k.shape, k.data)], `${base}_matmul`);
      const b = cfg.useBias !== false ? weight(c, 'bias') : null;
      if (b) y = g.node('Add', [y, g.floats(`${base}_bias`, b.shape, b.data)], `${base}_add`);
      return activation(c, outValue(c, y, false), String(cfg.activation ?? 'linear'));
    }
    case 'Conv2D': {
      const { v, hw } = spatialInput(c, x);
      const k = needWeight(c, 'kernel'); // [kh, kw, cin, cout]
      const [kh, kw, cin, cout] = k.shape;
      const w = g.floats(`${base}_kernel`, [cout, cin, kh, kw], transposeData(k.data, k.shape, [3, 2, 0, 1]));
      const b = cfg.useBias !== false ? weight(c, 'bias') : null;
      const strides = pair(cfg.strides, [1, 1]), dil = pair(cfg.dilationRate, [1, 1]);
      const y = g.node('Conv', b ? [v.name, w, g.floats(`${base}_bias`, b.shape, b.data)] : [v.name, w], `${base}_conv`, {
        kernel_shape: { ints: [kh, kw] }, strides: { ints: strides }, dilations: { ints: dil }, ...padAttrs(c, cfg.padding, hw, [kh, kw], strides, dil),
      });
      return activation(c, outValue(c, y, v.cf), String(cfg.activation ?? 'linear'));
    }
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      const { v, hw } = spatialInput(c, x);
      const pool = pair(cfg.poolSize, [2, 2]), strides = pair(cfg.strides, pool);
      const avg = cls === 'AveragePooling2D';
      const y = g.node(avg ? 'AveragePool' : 'MaxPool', [v.name], `${base}_pool`, {
        kernel_shape: { ints: pool }, strides: { ints: strides }, ...padAttrs(c, cfg.padding, hw, pool, strides, [1, 1]),
        // tfjs (like TF) averages over the pixels inside the image only
        ...(avg ? { count_include_pad: { i: 0 } } : {}),
      });
      return outValue(c, y, v.cf);
    }
    case 'GlobalMaxPooling2D':
    case 'GlobalAveragePooling2D': {
      if (cfg.keepDims === true) throw unsupported(layer, cls, 'keepDims: true is not converted');
      const { v } = spatialInput(c, x);
      const p = g.node(cls === 'GlobalMaxPooling2D' ? 'GlobalMaxPool' : 'GlobalAveragePool', [v.name], `${base}_pool`);
      return outValue(c, g.node('Flatten', [p], `${base}_flatten`, { axis: { i: 1 } }), false);
    }
    case 'Flatten': {
      let v = tfOrder(g, x);
      // tfjs moves a channelsFirst input's axis 1 last before flattening (Keras keeps weight order across formats)
      if (cfg.dataFormat === 'channelsFirst' && v.shape.length > 2) v = { ...v, name: g.node('Transpose', [v.name], `${base}_perm`, { perm: { ints: toTfPerm(v.shape.length) } }) };
      return outValue(c, g.node('Flatten', [v.name], `${base}_flatten`, { axis: { i: 1 } }), false);
    }
    case 'Reshape': {
      const v = tfOrder(g, x);
      const target = (cfg.targetShape as number[]).map(Number);
      // 0 copies the batch size from the input (opset 13 Reshape); -1 (at most one) is inferred as in tfjs
      return outValue(c, g.node('Reshape', [v.name, g.int64s(`${base}_shape`, [0, ...target])], `${base}_reshape`), false);
    }
    case 'Concatenate': {
      const axis = Number(cfg.axis ?? -1);
      const r = ins[0].shape.length;
      // all channels-first (rank >= 3): concatenate there; otherwise in tfjs's order
      const cf = r >= 3 && ins.every((v) => v.cf);
      const vs = cf ? ins : ins.map((v) => tfOrder(g, v));
      const a = onnxAxis(vs[0], axis);
      return outValue(c, g.node('Concat', vs.map((v) => v.name), `${base}_concat`, { axis: { i: a } }), cf);
    }
    case 'BatchNormalization': {
      const r = x.shape.length;
      const axisCfg = Array.isArray(cfg.axis) ? cfg.axis : [cfg.axis ?? -1];
      if (axisCfg.length !== 1) throw unsupported(layer, cls, `normalizing over several axes (${JSON.stringify(cfg.axis)})`);
      const ax = Number(axisCfg[0]) < 0 ? Number(axisCfg[0]) + r : Number(axisCfg[0]);
      // tfjs's cpu and wasm kernels apply the statistics along the last axis whatever `axis` says (tensorflow/tfjs#1106),
      // so for another axis no graph both follows Keras's definition and matches the model's tfjs predictions.
      if (ax !== r - 1) throw unsupported(layer, cls, `axis ${ax} of a rank-${r} input: only the last (channels) axis is converted, since tfjs itself computes other axes as if they were the last (tensorflow/tfjs#1106)`);
      // ONNX normalizes along axis 1: the last axis is there once channels-first (rank 2: already)
      const v = r >= 3 ? cfOrder(g, x) : x;
      const mean = needWeight(c, 'moving_mean'), variance = needWeight(c, 'moving_variance');
      const n = mean.data.length;
      const gamma = cfg.scale !== false ? needWeight(c, 'gamma').data : new Float32Array(n).fill(1);
      const beta = cfg.center !== false ? needWeight(c, 'beta').data : new Float32Array(n);
      const y = g.node('BatchNormalization', [v.name, g.floats(`${base}_gamma`, [n], gamma), g.floats(`${base}_beta`, [n], beta),
        g.floats(`${base}_mean`, [n], mean.data), g.floats(`${base}_variance`, [n], variance.data)], `${base}_bn`, { epsilon: { f: Number(cfg.epsilon ?? 1e-3) } });
      return outValue(c, y, v.cf);
    }
    case 'Activation': return activation(c, { ...x, shape: c.outShape }, String(cfg.activation));
    case 'ReLU': {
      const max = cfg.maxValue == null ? null : Number(cfg.maxValue);
      if (max === null) return activation(c, x, 'relu');
      return outValue(c, g.node('Clip', [x.name, g.floats(`${base}_min`, [], new Float32Array([0])), g.floats(`${base}_max`, [], new Float32Array([max]))], `${base}_clip`), x.cf);
    }
    case 'LeakyReLU': return outValue(c, g.node('LeakyRelu', [x.name], `${base}_leakyrelu`, { alpha: { f: Number(cfg.alpha ?? 0.3) } }), x.cf);
    case 'ELU': return activation(c, x, 'elu', Number(cfg.alpha ?? 1));
    case 'Softmax': {
      const axis = Array.isArray(cfg.axis) ? cfg.axis : [cfg.axis ?? -1];
      if (axis.length !== 1) throw unsupported(layer, cls, `softmax over several axes (${JSON.stringify(cfg.axis)})`);
      return outValue(c, g.node('Softmax', [x.name], `${base}_softmax`, { axis: { i: onnxAxis(x, Number(axis[0])) } }), x.cf);
    }
    default:
      throw unsupported(layer, cls, 'this layer class has no ONNX conversion here');
  }
}

function shapeProto(shape: Shape) {
  return { dim: shape.map((d, i) => (d == null ? { dim_param: i === 0 ? 'batch' : `d${i}` } : { dim_value: d })) };
}

/**
 * Convert a tfjs layers model (Sequential or functional, inference mode) into ONNX ModelProto bytes, opset 13.
 * Inputs and outputs keep tfjs's shapes and NHWC layout; the batch dimension is symbolic ('batch').
 * A layer or activation outside {@link ONNX_LAYERS} / {@link ONNX_ACTIVATIONS} is a SlimfitError naming it.
 *
 * @example
 * const bytes = toOnnx(buildModel('cnn', { inputShape: [28, 28, 1], classes: 10 }));
 */
export function toOnnx(model: tfl.LayersModel, opts: OnnxOptions = {}): Uint8Array {
  return buildOnnx(model, opts).bytes;
}

/** A graph input or output: its name and tfjs shape (null = any size, e.g. the batch). */
export interface OnnxIo { name: string; shape: Shape }

/** Options of {@link toOnnx} / {@link exportOnnx}. */
export interface OnnxOptions {
  /**
   * Put the loader's normalization in front of the model (one input only): the graph computes x * scale + shift per
   * channel (the last axis of an image; one value for flat samples) first, so it takes samples in stored units.
   */
  normalization?: { scale: number[]; shift: number[] };
}

/** The normalization's per-channel scale and shift, checked against the model's one input. */
function checkNormalization(model: tfl.LayersModel, n: NonNullable<OnnxOptions['normalization']>): { scale: Float32Array; shift: Float32Array } {
  if (model.inputs.length !== 1) throw new SlimfitError(`exportOnnx: option normalization needs a model with one input, this one has ${model.inputs.length}`);
  const shape = model.inputs[0].shape;
  const channels = shape.length >= 4 ? shape[shape.length - 1] : 1;
  const ok = (a: unknown): a is number[] => Array.isArray(a) && (a.length === 1 || a.length === channels) && a.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (!n || !ok(n.scale) || !ok(n.shift) || n.scale.length !== n.shift.length) {
    throw new SlimfitError(`exportOnnx: option normalization must be { scale, shift } with 1 or ${channels} finite numbers each (one per channel), got ${JSON.stringify(n)}`);
  }
  return { scale: Float32Array.from(n.scale), shift: Float32Array.from(n.shift) };
}

function buildOnnx(model: tfl.LayersModel, opts: OnnxOptions): { bytes: Uint8Array; inputs: OnnxIo[]; outputs: OnnxIo[] } {
  const norm = opts.normalization !== undefined ? checkNormalization(model, opts.normalization) : null;
  const g = new Graph();
  const values = new Map<number, Value>();
  const inputs: OnnxIo[] = [];
  const visit = (st: tfl.SymbolicTensor): Value => {
    const seen = values.get(st.id);
    if (seen) return seen;
    const layer = st.sourceLayer;
    const cls = layer.getClassName();
    let v: Value;
    if (cls === 'InputLayer') {
      if (st.dtype !== 'float32') throw unsupported(layer, cls, `input dtype ${st.dtype} (float32 only)`);
      v = { name: g.unique(layer.name), shape: st.shape, cf: false };
      inputs.push({ name: v.name, shape: st.shape });
      if (norm) {
        // the loader's transform: x * scale + shift, broadcast along the last (channels) axis
        const n = norm.scale.length;
        const scaled = g.node('Mul', [v.name, g.floats(`${layer.name}_norm_scale`, [n], norm.scale)], `${layer.name}_scaled`);
        v = { ...v, name: g.node('Add', [scaled, g.floats(`${layer.name}_norm_shift`, [n], norm.shift)], `${layer.name}_normalized`) };
      }
    } else {
      if (!(ONNX_LAYERS as readonly string[]).includes(cls)) throw unsupported(layer, cls, 'this layer class has no ONNX conversion here');
      const ins = st.inputs.map(visit);
      v = convert({ layer, cls, cfg: layer.getConfig() as Record<string, unknown>, g, outShape: st.shape }, ins);
    }
    values.set(st.id, v);
    return v;
  };
  const outputs = model.outputs.map((st) => {
    const v = tfOrder(g, visit(st));
    const name = g.unique(`${st.sourceLayer.name}_output`);
    g.nodes.push({ input: [v.name], output: [name], name, op_type: 'Identity', attribute: [] });
    return { name, shape: st.shape };
  });
  // graph inputs in the model's input order (visiting found them in use order)
  const order = model.inputs.map((st) => values.get(st.id)?.name);
  inputs.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  const io = (l: OnnxIo[]) => l.map((x) => ({ name: x.name, type: { tensor_type: { elem_type: ONNX_FLOAT, shape: shapeProto(x.shape) } } }));
  const Model = modelType();
  const msg = Model.fromObject({
    ir_version: IR_VERSION,
    opset_import: [{ domain: '', version: ONNX_OPSET }],
    producer_name: 'slimfit',
    graph: { name: model.name, node: g.nodes, initializer: g.inits, input: io(inputs), output: io(outputs) },
  });
  return { bytes: Model.encode(msg).finish(), inputs, outputs };
}

/**
 * Write `model` as an ONNX file (opset 13) at `path`, atomically (a temporary file renamed into place).
 * The file takes float32 NHWC input exactly as the tfjs model does (normalized as in training, unless
 * `opts.normalization` puts that step in the graph) and gives its outputs.
 *
 * @example
 * import { exportOnnx, loadModel } from 'slimfit';
 * await exportOnnx(await loadModel('runs/cnn/model'), 'cnn.onnx');
 * await exportOnnx(model, 'cnn-raw.onnx', { normalization: { scale: [1 / 255], shift: [0] } }); // takes 0..255 pixels
 * // python: onnxruntime.InferenceSession('cnn.onnx').run(None, {'input': x})
 */
export async function exportOnnx(model: tfl.LayersModel, path: string, opts: OnnxOptions = {}): Promise<{ bytes: number; inputs: OnnxIo[]; outputs: OnnxIo[] }> {
  if (typeof path !== 'string' || path === '') throw new SlimfitError('exportOnnx: path must be the .onnx file to write, e.g. "model.onnx"');
  if (!model || typeof (model as { getClassName?: unknown }).getClassName !== 'function' || !Array.isArray(model.outputs)) {
    throw new SlimfitError('exportOnnx: the model must be a tf.LayersModel (from buildModel, loadModel or tf.sequential/tf.model)');
  }
  const built = buildOnnx(model, opts);
  const bytes = built.bytes;
  const dir = dirname(path);
  if (!(await stat(dir).then((st) => st.isDirectory(), () => false))) {
    throw new SlimfitError(`the folder '${dir}' for the ONNX file does not exist`, { file: path, hint: 'create it first, or pick another --out' });
  }
  try {
    await writeAtomic(path, bytes);
  } catch (e) {
    await rm(`${path}.tmp-${process.pid}`, { force: true });
    throw e;
  }
  return { bytes: bytes.byteLength, inputs: built.inputs, outputs: built.outputs };
}
