// The benchmark's models, the same architectures as src/train's `mlp` and `cnn` and the PyTorch peer in bench-torch.py.
import type * as tfl from '@tensorflow/tfjs-layers';

/** Architectures the engine benchmark trains. */
export type BenchModel = 'mlp' | 'cnn';

/** MLP 784-512-512-10 (relu, softmax) or CNN conv3x3x32-pool2-conv3x3x64-pool2-dense128-dense10 on 28x28x1. */
export function buildBenchModel(layers: typeof tfl, kind: BenchModel): tfl.Sequential {
  const m = layers.sequential();
  if (kind === 'mlp') {
    m.add(layers.layers.dense({ inputShape: [784], units: 512, activation: 'relu' }));
    m.add(layers.layers.dense({ units: 512, activation: 'relu' }));
  } else {
    m.add(layers.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, activation: 'relu' }));
    m.add(layers.layers.maxPooling2d({ poolSize: 2 }));
    m.add(layers.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }));
    m.add(layers.layers.maxPooling2d({ poolSize: 2 }));
    m.add(layers.layers.flatten());
    m.add(layers.layers.dense({ units: 128, activation: 'relu' }));
  }
  m.add(layers.layers.dense({ units: 10, activation: 'softmax' }));
  return m;
}

/** Input shape of one sample for `kind`. */
export function sampleShape(kind: BenchModel): number[] {
  return kind === 'mlp' ? [784] : [28, 28, 1];
}

/** The GEMM work of one training sample of a model, counted from its layer shapes (multiply-adds x 2). */
export interface TrainingFlops { forward: number; dW: number; dX: number; total: number; counted: string }

/**
 * FLOPs per training sample of `model` from its Dense and Conv2D layer shapes: the forward product, the weight
 * gradient and the input gradient of every layer except the first (no one needs the gradient of the data), each
 * 2 x multiply-adds. Not counted: biases, activations, pooling, softmax/loss and the optimizer (a few % at most).
 */
export function trainingFlops(model: tfl.LayersModel): TrainingFlops {
  let forward = 0, dW = 0, dX = 0, first = true;
  for (const layer of model.layers) {
    const kind = layer.getClassName();
    if (kind !== 'Dense' && kind !== 'Conv2D') continue;
    const w = layer.getWeights()[0].shape;  // Dense [in, out]; Conv2D [kh, kw, c, oc]
    const outShape = layer.outputShape as (number | null)[];
    // positions per sample at which the layer multiplies: 1 for Dense on a vector, OH*OW for a conv
    const positions = kind === 'Dense' ? outShape.slice(1, -1).reduce<number>((a, b) => a * (b ?? 1), 1) : (outShape[1] ?? 1) * (outShape[2] ?? 1);
    const macs = positions * w.reduce((a, b) => a * b, 1);
    forward += 2 * macs;
    dW += 2 * macs;
    if (!first) dX += 2 * macs;
    first = false;
  }
  return { forward, dW, dX, total: forward + dW + dX, counted: 'GEMM/conv multiply-adds x2: forward + weight gradients + input gradients of all but the first layer; biases, activations, pooling, softmax and Adam not counted' };
}
