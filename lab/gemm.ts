// Quantized GEMMs for the lab's Dense layers: the product x·W of each layer replaced by one whose operands are rounded
// to an OCP MX format (blocks of 32 along the reduction axis of each GEMM, forward and optionally backward, as in
// Rouhani et al. 2023) or fake-quantized to int8 (per-tensor or per-channel weights, per-tensor affine activations,
// straight-through gradients, as PyTorch's quantization-aware training does).
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { SlimfitError } from '../src/core/errors.ts';
import { mxQuantize, type MxFormat } from '../src/precision/mx.ts';

/** Replaces the product x·W (x: [B, K], W: [K, N]) of Dense layer `layer` of a model. */
export interface GemmSpec {
  /** What is rounded where (one line, for tables). */
  describe: string;
  matmul(x: tf.Tensor2D, w: tf.Tensor2D, layer: number, training: boolean): tf.Tensor2D;
}

interface DenseInternals { kernel: tfl.LayerVariable; bias: tfl.LayerVariable | null }

/**
 * Run a chain of Dense layers with their products done by `gemm` (bias and activation in fp32).
 * @example denseChain(model.layers, x, mxGemm(MXFP8_E4M3, MXFP8_E5M2), true)
 */
export function denseChain(layers: tfl.LayersModel['layers'], x: tf.Tensor, gemm: GemmSpec, training: boolean): tf.Tensor {
  let h = x as tf.Tensor2D;
  layers.forEach((layer, k) => {
    if (layer.getClassName() !== 'Dense') throw new SlimfitError(`a quantized GEMM replaces Dense layers only; layer ${k} ('${layer.name}') is a ${layer.getClassName()}`);
    const d = layer as unknown as DenseInternals;
    const act = (layer.getConfig() as { activation?: string }).activation ?? 'linear';
    let y: tf.Tensor2D = gemm.matmul(h, d.kernel.read() as tf.Tensor2D, k, training);
    if (d.bias) y = tf.add(y, d.bias.read()) as tf.Tensor2D;
    if (act === 'relu') y = tf.relu(y);
    else if (act === 'softmax') y = tf.softmax(y);
    else if (act !== 'linear') throw new SlimfitError(`a quantized GEMM layer supports relu, softmax or linear activations; layer ${k} has '${act}'`);
    h = y;
  });
  return h;
}

function mx(fmt: MxFormat, t: tf.Tensor, axis: number): tf.Tensor2D {
  const v = t.dataSync() as Float32Array;
  return tf.tensor2d(mxQuantize(fmt, v, { shape: t.shape, axis }), t.shape as [number, number]);
}

/**
 * MX GEMMs: forward y = MX(x along K) · MX(W along K). With `bwd`, both backward GEMMs round their operands too,
 * each along its own reduction axis (dx = MX(dy along N) · MX(W along N)^T, dW = MX(x along B)^T · MX(dy along B));
 * without, they run in fp32 on the forward's MX-rounded x and W (straight-through).
 * @example mxGemm(MXFP4_E2M1, null).describe
 */
export function mxGemm(fwd: MxFormat, bwd: MxFormat | null): GemmSpec {
  const describe = `x and W of every forward GEMM in ${fwd.name} (blocks of 32 along K)${bwd ? `; backward GEMMs in ${bwd.name} for dy and ${fwd.name} for x and W, each along its reduction axis` : '; backward GEMMs in fp32 on the rounded x and W'}`;
  return {
    describe,
    matmul: (x, w) => (tf.customGrad(((xi: tf.Tensor2D, wi: tf.Tensor2D, save: (t: tf.Tensor[]) => void) => {
      const xq = mx(fwd, xi, 1), wq = mx(fwd, wi, 0);
      const value = tf.matMul(xq, wq);
      save(bwd ? [xi, wi] : [xq, wq]);
      return {
        value,
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
          const [a, b] = saved as tf.Tensor2D[];
          if (!bwd) return [tf.matMul(dy, b, false, true), tf.matMul(a, dy, true, false)];
          const dx = tf.matMul(mx(bwd, dy, 1), mx(fwd, b, 1), false, true);
          const dw = tf.matMul(mx(fwd, a, 0), mx(bwd, dy, 0), true, false);
          return [dx, dw];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor2D)(x, w),
  };
}

// ---- int8 fake quantization ----

/** Affine int8 quantization parameters: q = clamp(round(x / scale) + zeroPoint, qmin, qmax), value (q - zeroPoint) * scale. */
export interface QParams { scale: number; zeroPoint: number; qmin: number; qmax: number }

/**
 * Fake-quantize `x` in place semantics of PyTorch's `fake_quantize_per_tensor_affine` / `_per_channel_affine`
 * (float32 arithmetic: x times the float32 reciprocal of the scale, rounded half to even, clamped, then times the
 * scale). `channelOf(i)` picks the parameters of element i (per-channel); returns the output and a mask of elements
 * inside the clamp range (the straight-through estimator passes gradients there only).
 * @example fakeQuant(Float32Array.of(0.26, 20), [{ scale: 0.1, zeroPoint: 0, qmin: -127, qmax: 127 }], () => 0) // out [0.3, 12.7], inside [1, 0]
 */
export function fakeQuant(x: Float32Array, params: QParams[], channelOf: (i: number) => number, out = new Float32Array(x.length)): { out: Float32Array; inside: Uint8Array } {
  const inside = new Uint8Array(x.length);
  const inv = params.map((p) => Math.fround(1 / Math.fround(p.scale)));
  const sc = params.map((p) => Math.fround(p.scale));
  for (let i = 0; i < x.length; i++) {
    const c = channelOf(i), p = params[c];
    const v = x[i];
    if (v !== v) { out[i] = NaN; continue; }
    const y = Math.fround(v * inv[c]);
    const r = (Math.abs(y) < 4503599627370496 ? (y + 6755399441055744) - 6755399441055744 : y) + p.zeroPoint;
    const q = r < p.qmin ? p.qmin : r > p.qmax ? p.qmax : r;
    inside[i] = r >= p.qmin && r <= p.qmax ? 1 : 0;
    out[i] = Math.fround((q - p.zeroPoint) * sc[c]);
  }
  return { out, inside };
}

/**
 * Symmetric int8 weight parameters from max|w| (per tensor, or per output column of a [K, N] kernel): scale max/127, range ±127.
 * @example weightParams(Float32Array.of(1, -2, 0.5, 4), [2, 2], true).map((p) => p.scale) // [1 / 127, 4 / 127] (column maxima)
 */
export function weightParams(w: Float32Array, shape: readonly number[], perChannel: boolean): QParams[] {
  const n = perChannel ? shape[shape.length - 1] : 1;
  const mx = new Float64Array(n);
  for (let i = 0; i < w.length; i++) { const c = perChannel ? i % n : 0; const a = Math.abs(w[i]); if (a > mx[c]) mx[c] = a; }
  return Array.from(mx, (m) => ({ scale: m > 0 ? m / 127 : 1, zeroPoint: 0, qmin: -127, qmax: 127 }));
}

/**
 * Affine int8 activation parameters from an observed range [lo, hi] (0 always inside), as PyTorch's MinMaxObserver
 * computes them for an affine int8 tensor (float32 arithmetic): scale (hi - lo) / 255, zero point -128 - round(lo / scale).
 * @example activationParams(0, 2.55) // { scale: 0.01, zeroPoint: -128, qmin: -128, qmax: 127 }
 */
export function activationParams(lo: number, hi: number): QParams {
  lo = Math.fround(Math.min(lo, 0)); hi = Math.fround(Math.max(hi, 0));
  const scale = Math.max(Math.fround(Math.fround(hi - lo) / 255), 1.1920928955078125e-7); // float32 arithmetic, as torch
  const z = Math.fround(lo / scale);
  const zp = Math.min(127, Math.max(-128, -128 - ((z + 6755399441055744) - 6755399441055744))); // torch.round: half to even
  return { scale, zeroPoint: zp, qmin: -128, qmax: 127 };
}

/** A fake-quant op with the clipped straight-through gradient (1 inside the clamp range, 0 outside). */
function fqOp(params: () => QParams[], channels: number): (x: tf.Tensor) => tf.Tensor {
  return tf.customGrad(((x: tf.Tensor, save: (t: tf.Tensor[]) => void) => {
    const v = x.dataSync() as Float32Array;
    const { out, inside } = fakeQuant(v, params(), channels > 1 ? (i) => i % channels : () => 0);
    const mask = tf.tensor(inside, x.shape, 'float32');
    save([mask]);
    return { value: tf.tensor(out, x.shape, 'float32'), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, saved[0]) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;
}

/** State of an int8 GEMM: per-layer activation ranges (calibrated, then followed by an EMA while training). */
export interface Int8Gemm extends GemmSpec {
  /** Observed input range [lo, hi] of each layer's GEMM. */
  ranges: [number, number][];
  /** Record ranges (min/max over everything seen) instead of quantizing activations: calibration. */
  calibrating: boolean;
}

/**
 * int8 GEMMs: W fake-quantized symmetric int8 (per tensor or per output channel, scale from the current weights),
 * the GEMM input x affine int8 per tensor with the calibrated range; in training the range follows an exponential
 * moving average of batch min/max (PyTorch's MovingAverageMinMaxObserver, constant 0.01) and gradients pass straight
 * through inside the clamp range.
 * @example const g = int8Gemm(3, true); g.calibrating = true; trainer.predict(x); g.calibrating = false // then train or evaluate
 */
export function int8Gemm(layers: number, perChannel: boolean, ema = 0.01): Int8Gemm {
  const ranges: [number, number][] = Array.from({ length: layers }, () => [Infinity, -Infinity]);
  const g: Int8Gemm = {
    describe: `W symmetric int8 ${perChannel ? 'per output channel' : 'per tensor'}, GEMM inputs affine int8 per tensor`,
    ranges, calibrating: false,
    matmul: (x, w, k, training) => {
      const xv = x.dataSync() as Float32Array;
      let lo = Infinity, hi = -Infinity;
      for (let i = 0; i < xv.length; i++) { const v = xv[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
      const r = ranges[k];
      if (g.calibrating) { r[0] = Math.min(r[0], lo); r[1] = Math.max(r[1], hi); return tf.matMul(x, w); }
      if (!Number.isFinite(r[0])) { r[0] = lo; r[1] = hi; } else if (training) { r[0] += ema * (lo - r[0]); r[1] += ema * (hi - r[1]); }
      const xq = fqOp(() => [activationParams(r[0], r[1])], 1)(x) as tf.Tensor2D;
      const wv = w.dataSync() as Float32Array;
      const wq = fqOp(() => weightParams(wv, w.shape, perChannel), perChannel ? w.shape[1] : 1)(w) as tf.Tensor2D;
      return tf.matMul(xq, wq);
    },
  };
  return g;
}
