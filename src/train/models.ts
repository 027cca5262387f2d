// The built-in models (mlp, cnn, two-branch) on the tfjs layers API, seeded so two builds are identical.
import * as tfl from '@tensorflow/tfjs-layers';
import { SlimfitError } from '../core/errors.ts';
import { checkInt, checkOneOf, checkOptions, checkString, shown } from '../core/options.ts';

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
  /** The data the model is for (a store split, a file), named in errors. */
  source?: string;
}

/** Convolution (kernel) and max-pool (pool) steps on the way from the input image to the first flat layer. */
type Step = { kernel: number } | { pool: number };
/** The spatial steps of each conv model, in order (the layers below follow them). */
const STEPS: Record<'cnn' | 'two-branch', Step[]> = {
  cnn: [{ kernel: 3 }, { pool: 2 }, { kernel: 3 }, { pool: 2 }],
  'two-branch': [{ kernel: 3 }, { pool: 2 }],
};

/** Smallest image side a chain of 'valid' convolutions and pools turns into at least one pixel. */
export function minImageSide(steps: readonly Step[]): number {
  let side = 1;
  for (let i = steps.length - 1; i >= 0; i--) {
    const st = steps[i];
    side = 'kernel' in st ? side + st.kernel - 1 : side * st.pool;
  }
  return side;
}

/** Refuse specs no classifier can learn from (fewer than 2 classes). */
function checkClasses(spec: ModelSpec, model: string): void {
  if (!(Number.isInteger(spec.classes) && spec.classes >= 2)) {
    throw new SlimfitError(`model '${model}' needs at least 2 classes to tell apart, but the data has ${spec.classes}`, {
      file: spec.source, hint: 'a classifier over one class learns nothing (every answer is right); check the labels, or convert the input with its other classes',
    });
  }
}

/** The spec's fields by type and range (checkClasses then says why fewer than 2 classes cannot work). */
function checkSpec(spec: unknown): asserts spec is ModelSpec {
  if (spec === undefined) throw new SlimfitError("buildModel: a spec is needed, e.g. buildModel('mlp', { inputShape: [28, 28, 1], classes: 10 })");
  checkOptions('buildModel', spec, ['inputShape', 'classes', 'seed', 'source']);
  const s = spec as Record<string, unknown>;
  const shape = s.inputShape;
  if (!(Array.isArray(shape) && shape.length > 0 && shape.every((d) => Number.isSafeInteger(d) && d >= 1))) {
    throw new SlimfitError(`buildModel: option inputShape must be the per-sample shape as whole numbers >= 1, e.g. [28, 28, 1], got ${shown(shape)}`);
  }
  if (s.classes === undefined) throw new SlimfitError('buildModel: option classes (the number of classes, e.g. 10) is missing');
  checkInt('buildModel', 'classes', s.classes, 0);
  checkInt('buildModel', 'seed', s.seed, 0, 2 ** 52);
  checkString('buildModel', 'source', s.source);
}

/** Per-layer seeded initializers: layer k gets seed*1000+k, so a model is a pure function of its seed. */
function seeder(seed: number) {
  let k = 0;
  return () => ({
    kernelInitializer: tfl.initializers.glorotUniform({ seed: seed * 1000 + ++k }),
    biasInitializer: 'zeros' as const,
  });
}

/**
 * An image view of the input: [h, w, c] stays, [h, w] gets a channel axis; anything else, or images smaller than the
 * model's convolutions and pools can take, is refused with what to use instead.
 */
function imageShape(spec: ModelSpec, model: 'cnn' | 'two-branch'): number[] {
  const shape = spec.inputShape;
  if (shape.length !== 2 && shape.length !== 3) {
    throw new SlimfitError(`model '${model}' needs image samples ([h, w] or [h, w, c]) but the samples have shape [${shape.join(',')}]`, {
      file: spec.source, hint: 'use the mlp model (--model mlp) for flat feature vectors, or convert text with --shape H,W to give its features an image shape',
    });
  }
  const min = minImageSide(STEPS[model]);
  if (shape[0] < min || shape[1] < min) {
    throw new SlimfitError(`model '${model}' needs images of at least ${min}x${min} pixels (its convolutions and pools shrink them), but the samples are ${shape[1]}x${shape[0]}`, {
      file: spec.source, hint: `use --model ${model === 'cnn' && shape[0] >= minImageSide(STEPS['two-branch']) && shape[1] >= minImageSide(STEPS['two-branch']) ? 'two-branch or mlp' : 'mlp'}, or convert the images with --resize ${Math.max(min, shape[1])}x${Math.max(min, shape[0])}`,
    });
  }
  return shape.length === 3 ? shape : [...shape, 1];
}

/** 784-512-512-10 style multilayer perceptron (flattens image input; flat feature vectors go straight in). */
export function mlp(spec: ModelSpec): tfl.LayersModel {
  checkClasses(spec, 'mlp');
  const init = seeder(spec.seed ?? 0);
  const m = tfl.sequential({ name: 'mlp' });
  // tfjs's Flatten refuses inputs that are already flat ([batch, features]).
  const flat = spec.inputShape.length === 1;
  if (!flat) m.add(tfl.layers.flatten({ inputShape: spec.inputShape }));
  m.add(tfl.layers.dense({ units: 512, activation: 'relu', ...(flat ? { inputShape: spec.inputShape } : {}), ...init() }));
  m.add(tfl.layers.dense({ units: 512, activation: 'relu', ...init() }));
  m.add(tfl.layers.dense({ units: spec.classes, activation: 'softmax', ...init() }));
  return m;
}

/** Two conv(3x3, relu) + max-pool blocks (32 and 64 filters), dense 128, softmax. */
export function cnn(spec: ModelSpec): tfl.LayersModel {
  checkClasses(spec, 'cnn');
  const init = seeder(spec.seed ?? 0);
  const shape = imageShape(spec, 'cnn');
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
  checkClasses(spec, 'two-branch');
  const init = seeder(spec.seed ?? 0);
  const shape = imageShape(spec, 'two-branch');
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
  checkOneOf('buildModel', 'name', name, BUILTIN_MODELS);
  checkSpec(spec);
  switch (name) {
    case 'mlp': return mlp(spec);
    case 'cnn': return cnn(spec);
    case 'two-branch': return twoBranch(spec);
  }
}
