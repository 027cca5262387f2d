// Conv2D + bias + ReLU stays one kernel in training. tfjs-core's tf.fused.conv2d splits itself into Conv2D, Add and
// Relu whenever gradients are recorded (its fused kernels have no gradient with an activation), and the ReLU's
// gradient becomes Step + Multiply, and the bias's a Sum: six passes over the layer's output (~11 MB per batch for
// the CNN's first layer). Here tf.fused.conv2d runs one kernel (SlimfitConv2DBiasAct: the engine's conv with its
// bias/ReLU epilogue) whose registered gradient makes one pass (SlimfitReluGradBias: g = y > 0 ? dy : 0 and the
// bias gradient) and then the engine's two conv backprops. Gradients are registered per input, so tfjs still skips
// dx of a first layer (its input is data, not a variable).
import type * as tfc from '@tensorflow/tfjs-core';

type Tf = typeof tfc;
type FusedConvArgs = Parameters<Tf['fused']['conv2d']>[0];

export const FUSED_CONV_KERNEL = 'SlimfitConv2DBiasAct';
export const RELU_GRAD_BIAS_KERNEL = 'SlimfitReluGradBias';

interface Attrs { strides: number | [number, number]; pad: 'same' | 'valid'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; activation: 'relu' | 'linear' }

let gradientRegistered = false;
const patched = new WeakSet<object>();
// the latest install's predicate and backend (installEngine may run again after uninstallEngine)
let current: { backendName: string; active: () => boolean } = { backendName: '', active: () => false };

/** The arguments tf.fused.conv2d was called with, when the engine's kernel covers them (else null). */
function eligible(tf: Tf, a: FusedConvArgs): { inputs: Record<string, tfc.Tensor>; attrs: Attrs } | null {
  const { x, filter, bias, strides, pad, dataFormat, dilations, dimRoundingMode, activation, preluActivationWeights } = a;
  if (!(x instanceof tf.Tensor) || !(filter instanceof tf.Tensor) || x.rank !== 4 || filter.rank !== 4) return null;
  if (x.dtype !== 'float32' || filter.dtype !== 'float32' || x.shape[3] !== filter.shape[2]) return null;
  if (activation != null && activation !== 'linear' && activation !== 'relu') return null;
  if (preluActivationWeights != null || (dataFormat != null && dataFormat !== 'NHWC')) return null;
  if (pad !== 'same' && pad !== 'valid') return null;
  if (dilations != null && !(dilations === 1 || (Array.isArray(dilations) && dilations[0] === 1 && dilations[1] === 1))) return null;
  if (bias != null && (!(bias instanceof tf.Tensor) || bias.rank !== 1 || bias.dtype !== 'float32' || bias.shape[0] !== filter.shape[3])) return null;
  const inputs: Record<string, tfc.Tensor> = bias ? { x, filter, bias } : { x, filter };
  return { inputs, attrs: { strides, pad, dimRoundingMode, activation: activation === 'relu' ? 'relu' : 'linear' } };
}

/** Route tf.fused.conv2d through the engine's kernel while `active()` and the backend is `backendName`. */
export function patchFusedConv(tf: Tf, backendName: string, active: () => boolean): void {
  if (!gradientRegistered) {
    tf.registerGradient({
      kernelName: FUSED_CONV_KERNEL,
      inputsToSave: ['x', 'filter'],
      outputsToSave: [true],
      gradFunc: (dy, saved, attrs) => {
        const [x, filter, y] = saved as tfc.Tensor4D[];
        const a = attrs as unknown as Attrs;
        const d = dy as tfc.Tensor4D;
        let g: tfc.Tensor4D, db: tfc.Tensor;
        if (a.activation === 'relu') [g, db] = tf.engine().runKernel(RELU_GRAD_BIAS_KERNEL, { y, dy: d }, {}) as unknown as [tfc.Tensor4D, tfc.Tensor];
        else [g, db] = [d, tf.sum(d, [0, 1, 2])];
        const conv = { strides: a.strides, pad: a.pad, dataFormat: 'NHWC', dimRoundingMode: a.dimRoundingMode };
        return {
          x: () => tf.engine().runKernel('Conv2DBackpropInput', { dy: g, filter }, { ...conv, inputShape: x.shape } as unknown as tfc.NamedAttrMap) as tfc.Tensor,
          filter: () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: g }, { ...conv, filterShape: filter.shape } as unknown as tfc.NamedAttrMap) as tfc.Tensor,
          bias: () => db,
        };
      },
    });
    gradientRegistered = true;
  }
  current = { backendName, active };
  const fused = tf.fused as { conv2d: Tf['fused']['conv2d'] };
  if (patched.has(fused)) return;
  const original = fused.conv2d;
  fused.conv2d = ((args: FusedConvArgs) => {
    const e = current.active() && tf.getBackend() === current.backendName ? eligible(tf, args) : null;
    if (!e) return original(args);
    return tf.engine().runKernel(FUSED_CONV_KERNEL, e.inputs, { ...e.attrs, dataFormat: 'NHWC', dilations: 1 } as unknown as tfc.NamedAttrMap) as tfc.Tensor4D;
  }) as Tf['fused']['conv2d'];
  patched.add(fused);
}
