// `slimfit export-model`'s library side: a run folder (or a model folder / model.json) to an ONNX file, plus what
// input the exported graph expects (the normalization the run trained with is not part of the model).
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import { readManifest } from '../store/manifest.ts';
import { initBackend } from './backend.ts';
import { loadModel } from './modelio.ts';
import { exportOnnx, ONNX_OPSET, type OnnxIo } from './onnx.ts';
import type { RunConfig } from './run-config.ts';

/** Model export formats (`--format`). */
export const MODEL_FORMATS = ['onnx'] as const;

/** What {@link exportModel} wrote. */
export interface ModelExport {
  out: string;
  format: 'onnx';
  opset: number;
  bytes: number;
  inputs: OnnxIo[];
  outputs: OnnxIo[];
  /** How the run normalized samples before the model saw them, in words, or null when unknown (not a run folder). */
  normalization: string | null;
  /** Whether the graph starts with that normalization (then it takes samples in stored units), else it expects normalized input. */
  normalizationIncluded: boolean;
}

/** A run's normalization: in words (with the store's numbers for manifest stats) and, when known, as scale/shift per channel. */
interface RunNormalization { text: string; scaleShift: { scale: number[]; shift: number[] } | null }

/** How the run in `runDir` normalized samples (from its run.json), or null when it does not say. */
async function runNormalization(runDir: string): Promise<RunNormalization | null> {
  let cfg: RunConfig;
  try {
    cfg = JSON.parse(await readFile(join(runDir, 'run.json'), 'utf8')) as RunConfig;
  } catch {
    return null;
  }
  const n = cfg.normalize;
  if (n === undefined) return null;
  if (n === false) return { text: 'none (samples as stored, as float32)', scaleShift: { scale: [1], shift: [0] } };
  if (n === 'stats') {
    const fmt = (a: number[]) => `[${a.map((v) => +v.toPrecision(6)).join(', ')}]`;
    const stats = typeof cfg.data === 'string' ? await readManifest(cfg.data).then((m) => m.stats, () => undefined) : undefined;
    if (!stats) return { text: "(x - mean) / std per channel with the mean/std of the store's manifest (stats)", scaleShift: null };
    // as the loader computes it (src/loader/transform.ts): scale 1/std (1 where std is 0), shift -mean/std
    const scale = stats.std.map((s) => (s > 0 ? 1 / s : 1));
    const shift = stats.mean.map((m, c) => -m * scale[stats.std.length === 1 ? 0 : c]);
    return { text: `(x - mean) / std per channel, mean ${fmt(stats.mean)}, std ${fmt(stats.std)} (the store's '${stats.split}' stats, in stored units)`, scaleShift: { scale, shift } };
  }
  return { text: `x * ${n.scale} + ${n.shift}`, scaleShift: { scale: [n.scale], shift: [n.shift] } };
}

/**
 * Export a trained model to `format` (only 'onnx', opset {@link ONNX_OPSET}). `path` is a run folder written by
 * `slimfit train` (its model/), a model folder, or a model.json; `out` defaults to model.onnx in the run folder
 * (beside the model.json otherwise). With `includeNormalization` (a run folder only) the graph starts with the run's
 * normalization, so it takes samples in stored units (e.g. 0-255 pixels). The file is written atomically.
 *
 * @example
 * const r = await exportModel('runs/cnn', { format: 'onnx' });
 * console.log(r.out, r.inputs, r.normalization); // runs/cnn/model.onnx [{ name: 'conv2d_Conv2D1_input', shape: [null, 28, 28, 1] }] ...
 */
export async function exportModel(path: string, opts: { format?: 'onnx'; out?: string; includeNormalization?: boolean } = {}): Promise<ModelExport> {
  if (typeof path !== 'string' || path === '') throw new SlimfitError('exportModel: path must be a run folder, a model folder or a model.json');
  const format = opts.format ?? 'onnx';
  if (!(MODEL_FORMATS as readonly string[]).includes(format)) throw new SlimfitError(`exportModel: unknown format '${String(format)}'`, { hint: `formats: ${MODEL_FORMATS.join(', ')}` });
  const isRun = await stat(join(path, 'model', 'model.json')).then(() => true, () => false);
  const modelPath = isRun ? join(path, 'model') : path;
  const out = opts.out ?? (isRun ? join(path, 'model.onnx') : join(modelPath.endsWith('.json') ? dirname(modelPath) : modelPath, 'model.onnx'));
  const norm = isRun ? await runNormalization(path) : null;
  if (opts.includeNormalization && !norm?.scaleShift) {
    throw new SlimfitError(isRun ? (norm ? "the run normalized with its store's stats, but the store's dataset.json cannot be read now" : "the run's run.json does not say how it normalized samples")
      : 'only a run folder (runs/NAME) records the normalization its model was trained with', {
      file: path, hint: 'export without --include-normalization and normalize the input yourself, or point RUN at the run folder (with its store in place)',
    });
  }
  // Loading needs a tfjs backend for the weights; nothing is computed, so the plain cpu backend is enough.
  await initBackend('cpu');
  const model = await loadModel(modelPath);
  try {
    const r = await exportOnnx(model, out, opts.includeNormalization ? { normalization: norm!.scaleShift! } : {});
    return {
      out, format, opset: ONNX_OPSET, bytes: r.bytes, inputs: r.inputs, outputs: r.outputs,
      normalization: norm?.text ?? null, normalizationIncluded: opts.includeNormalization === true,
    };
  } finally {
    model.dispose();
  }
}
