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
