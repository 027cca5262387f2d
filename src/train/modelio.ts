// Saving and loading tfjs layers models (model.json + weights.bin) on the local disk, atomically, with clear errors.
import { renameSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { SlimfitError } from '../core/errors.ts';

/** File name of the model topology + weights manifest inside a saved model folder. */
export const MODEL_JSON = 'model.json';

function joinWeights(w: ArrayBuffer | ArrayBuffer[] | undefined): Uint8Array {
  if (!w) return new Uint8Array(0);
  const parts = Array.isArray(w) ? w : [w];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let o = 0;
  for (const p of parts) { out.set(new Uint8Array(p), o); o += p.byteLength; }
  return out;
}

/**
 * Save `model` (with its optimizer state when compiled) as the standard tfjs layers format into folder `dir`:
 * written to a temporary sibling folder first and renamed into place, so `dir` is either absent or complete.
 * `extraFiles` (name -> text) land in the same folder in the same rename (e.g. the loader cursor of a checkpoint).
 */
export async function saveModel(model: tfl.LayersModel, dir: string, opts: { includeOptimizer?: boolean; extraFiles?: Record<string, string> } = {}): Promise<void> {
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${process.pid}-${Date.now()}`);
  await mkdir(tmp, { recursive: true });
  // tfjs leaks one tensor per save (the optimizer's iteration-count scalar): collect everything temporary in a scope.
  tf.engine().startScope();
  try {
    await model.save({
      save: async (a: tf.io.ModelArtifacts) => {
        const weights = joinWeights(a.weightData as ArrayBuffer | ArrayBuffer[] | undefined);
        const json = {
          format: a.format ?? 'layers-model',
          generatedBy: a.generatedBy,
          convertedBy: a.convertedBy ?? 'slimfit',
          modelTopology: a.modelTopology,
          trainingConfig: a.trainingConfig,
          weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs ?? [] }],
        };
        await writeFile(join(tmp, 'weights.bin'), weights);
        await writeFile(join(tmp, MODEL_JSON), JSON.stringify(json));
        for (const [name, text] of Object.entries(opts.extraFiles ?? {})) await writeFile(join(tmp, name), text);
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.byteLength } };
      },
    }, { includeOptimizer: opts.includeOptimizer ?? model.optimizer != null }).finally(() => tf.engine().endScope());
    const old = `${tmp}.old`;
    const had = await stat(dir).then(() => true, () => false);
    // Both renames in one synchronous step: a signal handler (JS runs it between event-loop turns) that exits at once,
    // e.g. on a second Ctrl-C during a checkpoint, finds either the old complete folder or the new one at `dir`.
    if (had) renameSync(dir, old);
    renameSync(tmp, dir);
    if (had) await rm(old, { recursive: true, force: true });
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

interface WeightsGroup { paths: string[]; weights: tf.io.WeightsManifestEntry[] }

/** Read model.json + weight files into artifacts, checking each piece and naming the file at fault. */
async function readArtifacts(path: string): Promise<tf.io.ModelArtifacts> {
  const file = path.endsWith('.json') ? path : join(path, MODEL_JSON);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new SlimfitError(`cannot read the model file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, {
      file, hint: 'pass a tfjs layers model.json (as written by model.save) or one of: mlp, cnn, two-branch',
    });
  }
  let j: { modelTopology?: unknown; weightsManifest?: WeightsGroup[]; format?: string; trainingConfig?: tf.io.TrainingConfig; generatedBy?: string; convertedBy?: string };
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new SlimfitError(`the model file is not valid JSON (${(e as Error).message})`, { file, hint: 'pass a tfjs layers model.json' });
  }
  // A bare topology (tfjs's `model.toJSON(null, false)`; Keras's `model.to_json()` has the same shape): no weights.
  if (j && typeof j === 'object' && !('modelTopology' in j) && typeof (j as { class_name?: unknown }).class_name === 'string' && typeof (j as { config?: unknown }).config === 'object') {
    j = { modelTopology: j };
  }
  if (!j || typeof j !== 'object' || !j.modelTopology || typeof j.modelTopology !== 'object') {
    throw new SlimfitError('the model file has no "modelTopology"', { file, hint: 'pass a tfjs layers model.json (graph models from the converter cannot be trained)' });
  }
  if (j.format && j.format !== 'layers-model') {
    throw new SlimfitError(`the model file is a '${j.format}', not a 'layers-model'`, { file, hint: 'only tfjs layers models can be trained' });
  }
  const specs: tf.io.WeightsManifestEntry[] = [];
  const chunks: Uint8Array[] = [];
  for (const g of j.weightsManifest ?? []) {
    if (!g || !Array.isArray(g.paths) || !Array.isArray(g.weights)) throw new SlimfitError('malformed "weightsManifest"', { file });
    specs.push(...g.weights);
    for (const p of g.paths) {
      if (typeof p !== 'string' || p.includes('..') || p.startsWith('/')) throw new SlimfitError(`bad weight file path '${p}'`, { file });
      const wf = join(dirname(file), p);
      try {
        chunks.push(await readFile(wf));
      } catch {
        throw new SlimfitError(`weight file '${p}' named by the model is missing`, { file: wf, hint: 'copy the whole model folder' });
      }
    }
  }
  const data = joinWeights(chunks.map((c) => c.buffer.slice(c.byteOffset, c.byteOffset + c.byteLength) as ArrayBuffer));
  const bytesPer: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, float16: 2, int16: 2 };
  let need = 0;
  for (const s of specs) {
    const per = s.quantization ? bytesPer[s.quantization.dtype] ?? 4 : bytesPer[s.dtype] ?? 4;
    need += s.shape.reduce((a, d) => a * d, 1) * per;
  }
  if (need !== data.byteLength) {
    throw new SlimfitError(`the weight files hold ${data.byteLength} bytes but the manifest describes ${need}`, { file, hint: 'the weights are truncated or belong to another model' });
  }
  return {
    modelTopology: j.modelTopology as object, weightSpecs: specs, weightData: data.buffer as ArrayBuffer,
    format: j.format, generatedBy: j.generatedBy, convertedBy: j.convertedBy, trainingConfig: j.trainingConfig,
  };
}

/** True when artifacts carry a topology but no weights (a model.json written with only its architecture). */
function topologyOnly(a: tf.io.ModelArtifacts): boolean {
  return (a.weightSpecs ?? []).length === 0;
}

/** Load a tfjs layers model from a folder or model.json path (optimizer state restored when saved with it). */
export async function loadModel(path: string): Promise<tfl.LayersModel> {
  return fromArtifacts(await readArtifacts(path), path);
}

/** Build the model of read artifacts (weights set), naming `path` in errors. */
async function fromArtifacts(artifacts: tf.io.ModelArtifacts, path: string): Promise<tfl.LayersModel> {
  try {
    return await tfl.loadLayersModel({ load: async () => artifacts });
  } catch (e) {
    // tfjs says "N of N weights are not set" for a file that holds only the architecture
    if (topologyOnly(artifacts)) {
      throw new SlimfitError('the model file holds only a topology, no weights', {
        file: path, hint: 'train it first (slimfit train DIR --model FILE builds it with fresh weights), then use the run folder',
      });
    }
    throw new SlimfitError(`tfjs cannot build this model: ${(e as Error).message.split('\n')[0]}`, {
      file: path, hint: 'pass a tfjs layers model.json written by model.save (tfjs-layers 4.x)',
    });
  }
}

/** Initializer classes that draw random numbers (tfjs and Keras names); their `seed` is set when a topology is built fresh. */
const RANDOM_INITIALIZERS = new Set(['GlorotUniform', 'GlorotNormal', 'HeNormal', 'HeUniform', 'LeCunNormal', 'LeCunUniform', 'RandomNormal', 'RandomUniform', 'TruncatedNormal', 'VarianceScaling', 'Orthogonal']);

/** A copy of `topology` whose unseeded random initializers get seeds seed*1000+k (k = 1, 2, ... in file order), like the built-in models. */
function seedTopology(topology: unknown, seed: number): unknown {
  let k = 0;
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (!v || typeof v !== 'object') return v;
    const o = Object.fromEntries(Object.entries(v).map(([key, x]) => [key, walk(x)])) as Record<string, unknown>;
    const cfg = o.config as Record<string, unknown> | undefined;
    if (typeof o.class_name === 'string' && RANDOM_INITIALIZERS.has(o.class_name) && cfg && typeof cfg === 'object' && cfg.seed == null) {
      o.config = { ...cfg, seed: seed * 1000 + ++k };
    }
    return o;
  };
  return walk(topology);
}

/**
 * Load a user's model.json to train it: with weights they are the starting point (a warm start); a topology-only file
 * (no weightsManifest, or a bare topology as `JSON.stringify(model.toJSON(null, false))` writes) is built with fresh weights, its unseeded initializers seeded from `seed` so the run is repeatable. `note`
 * says which, in one line.
 *
 * @example
 * const { model, note } = await loadModelForTraining('my-model.json', 0);
 * console.log(note); // "my-model.json has no weights: built its topology with fresh weights (initializers seeded from --seed 0)"
 */
export async function loadModelForTraining(path: string, seed: number): Promise<{ model: tfl.LayersModel; warmStart: boolean; note: string }> {
  const artifacts = await readArtifacts(path);
  if (!topologyOnly(artifacts)) {
    const model = await fromArtifacts(artifacts, path);
    const n = model.getWeights().length;
    return { model, warmStart: true, note: `${path} holds trained weights: using them as a warm start (${n} weight tensors), not a fresh initialization` };
  }
  const topology = seedTopology(artifacts.modelTopology, seed) as object;
  let model: tfl.LayersModel;
  try {
    model = await tfl.models.modelFromJSON({ modelTopology: topology } as tfl.ModelAndWeightsConfig);
  } catch (e) {
    throw new SlimfitError(`tfjs cannot build this model: ${(e as Error).message.split('\n')[0]}`, {
      file: path, hint: 'pass a tfjs layers model.json (model.toJSON / model.save) whose layers tfjs knows',
    });
  }
  return { model, warmStart: false, note: `${path} has no weights: built its topology with fresh weights (initializers seeded from --seed ${seed})` };
}
