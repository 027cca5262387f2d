// `slimfit eval RUN DIR`: accuracy of a trained model on a split, with a confusion matrix (PNG, SVG, markdown).
import type { Command } from 'commander';
import { DEFAULTS } from '../train/defaults.ts';
import { addRemoteFlags, remoteFlags, wholeFlag } from './flags.ts';
import { JSON_FLAG, keepStdoutForJson, printJson } from './json-out.ts';

/** Register `eval`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('eval')
    .description('evaluate a run (runs/NAME) or a tfjs model.json on a split of a store; writes a confusion matrix')
    .argument('<RUN>', 'run folder written by `slimfit train`, or a model folder / model.json')
    .argument('<DIR>', 'store folder or URL (http(s)://host/path, s3://bucket/prefix)')
    .option('--split <name>', 'split to evaluate', DEFAULTS.evalSplit)
    .option('--batch <n>', 'batch size', wholeFlag('--batch', 1), DEFAULTS.evalBatchSize)
    .option('--out <dir>', 'where to write the confusion matrix (default: the run folder)')
    .option('--backend <name>', 'force the TensorFlow.js backend: wasm or cpu')
    .option('--no-verify', 'do not check the store\'s shard checksums (SHA-256) before using them')
    .option('--json', JSON_FLAG)
    .action(async (run: string, dir: string, o) => {
      if (o.json) keepStdoutForJson();
      const { evalRun } = await import('../train/run.ts');
      const r = await evalRun(run, dir, { split: o.split, batchSize: o.batch, backend: o.backend, outDir: o.out, verifyChecksums: o.verify, remote: remoteFlags(o) });
      if (o.json) {
        const { accuracy, loss, samples, confusion } = r.result;
        printJson({ run, split: o.split, accuracy, loss, samples, confusion, files: ['png', 'svg', 'md'].map((e) => `${r.files}.${e}`) });
        return;
      }
      process.stdout.write(`accuracy ${(100 * r.result.accuracy).toFixed(2)}% (${r.result.samples} samples of '${o.split}', loss ${r.result.loss.toFixed(4)})\n`);
      process.stdout.write(`confusion matrix: ${r.files}.png, ${r.files}.svg, ${r.files}.md\n`);
    }));
}
