// The built-in models (mlp, cnn, two-branch) on the tfjs layers API, seeded so two builds are identical.
import * as tfl from '@tensorflow/tfjs-layers';
import { SlimfitError } from '../core/errors.ts';

/** Names accepted by `--model` besides a path to a user's model.json. */
export const BUILTIN_MODELS = ['mlp', 'cnn', 'two-branch'] as const;
/** A built-in model name. */
export type BuiltinModel = (typeof BUILTIN_MODELS)[number];

/** True if `s` names a built-in model. */
export function isBuiltinModel(s: string): s is BuiltinModel {
  return (BUILTIN_MODELS as readonly string[]).includes(s);
}

/** Shape hints for building a model. */
export interface ModelSpec {
  /** Per-sample input shape as the loader delivers it (e.g. [28, 28, 1]). */
  inputShape: number[];
  classes: number;
  /** Seed of the weight initializers (default 0). */
  seed?: number;
}

/** Per-layer seeded initializers: layer k gets seed*1000+k, so a model is a pure function of its seed. */
function seeder(seed: number) {
  let k = 0;
  return () => ({
    kernelInitializer: tfl.initializers.glorotUniform({ seed: seed * 1000 + ++k }),
    biasInitializer: 'zeros' as const,
  });
}

/** An image view of the input: [h, w, c] stays, [h, w] gets a channel axis, anything else is refused for conv models. */
function imageShape(shape: number[], model: string): number[] {
  if (shape.length === 3) return shape;
  if (shape.length === 2) return [...shape, 1];
  throw new SlimfitError(`model '${model}' needs image samples ([h, w] or [h, w, c]) but x has per-sample shape [${shape.join(',')}]`, {
    hint: 'use --model mlp for flat vectors',
  });
}

/** 784-512-512-10 style multilayer perceptron (flattens any input). */
export function mlp(spec: ModelSpec): tfl.LayersModel {
  const init = seeder(spec.seed ?? 0);
  const m = tfl.sequential({ name: 'mlp' });
  m.add(tfl.layers.flatten({ inputShape: spec.inputShape }));
  m.add(tfl.layers.dense({ units: 512, activation: 'relu', ...init() }));
  m.add(tfl.layers.dense({ units: 512, activation: 'relu', ...init() }));
  m.add(tfl.layers.dense({ units: spec.classes, activation: 'softmax', ...init() }));
  return m;
}

/** Two conv(3x3, relu) + max-pool blocks (32 and 64 filters), dense 128, softmax. */
export function cnn(spec: ModelSpec): tfl.LayersModel {
  const init = seeder(spec.seed ?? 0);
  const shape = imageShape(spec.inputShape, 'cnn');
  const m = tfl.sequential({ name: 'cnn' });
  if (shape.length !== spec.inputShape.length) m.add(tfl.layers.reshape({ inputShape: spec.inputShape, targetShape: shape }));
  m.add(tfl.layers.conv2d({ ...(m.layers.length ? {} : { inputShape: shape }), filters: 32, kernelSize: 3, activation: 'relu', ...init() }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu', ...init() }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ units: 128, activation: 'relu', ...init() }));
  m.add(tfl.layers.dense({ units: spec.classes, activation: 'softmax', ...init() }));
  return m;
}

/** Functional graph: one input feeding a conv branch and a separate dense branch, concatenated before the softmax output. */
export function twoBranch(spec: ModelSpec): tfl.LayersModel {
  const init = seeder(spec.seed ?? 0);
  const shape = imageShape(spec.inputShape, 'two-branch');
  const input = tfl.input({ shape: spec.inputShape, name: 'input' });
  const img = shape.length !== spec.inputShape.length
    ? tfl.layers.reshape({ targetShape: shape, name: 'to_image' }).apply(input) as tfl.SymbolicTensor
    : input;
  let c = tfl.layers.conv2d({ filters: 16, kernelSize: 3, activation: 'relu', name: 'conv_branch_conv', ...init() }).apply(img) as tfl.SymbolicTensor;
  c = tfl.layers.maxPooling2d({ poolSize: 2, name: 'conv_branch_pool' }).apply(c) as tfl.SymbolicTensor;
  c = tfl.layers.flatten({ name: 'conv_branch_flatten' }).apply(c) as tfl.SymbolicTensor;
  let d = tfl.layers.flatten({ name: 'dense_branch_flatten' }).apply(input) as tfl.SymbolicTensor;
  d = tfl.layers.dense({ units: 128, activation: 'relu', name: 'dense_branch_dense', ...init() }).apply(d) as tfl.SymbolicTensor;
  const merged = tfl.layers.concatenate({ name: 'merge' }).apply([c, d]) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: spec.classes, activation: 'softmax', name: 'output', ...init() }).apply(merged) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out, name: 'two_branch' });
}

/**
 * Build a built-in model by name ('mlp', 'cnn', 'two-branch'), a tf.LayersModel of the caller's own tfjs.
 *
 * @example
 * const model = buildModel('cnn', { inputShape: [28, 28, 1], classes: 10, seed: 0 });
 * await fit(model, 'mnist-store', { epochs: 5 });
 */
export function buildModel(name: BuiltinModel, spec: ModelSpec): tfl.LayersModel {
  switch (name) {
    case 'mlp': return mlp(spec);
    case 'cnn': return cnn(spec);
    case 'two-branch': return twoBranch(spec);
  }
}
