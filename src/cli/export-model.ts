// `slimfit export-model RUN --format onnx [--out FILE]`: a trained model as an ONNX file for other runtimes.
import { type Command, Option } from 'commander';
import { formatBytes } from '../core/rss.ts';
import { JSON_FLAG, keepStdoutForJson, printJson } from './json-out.ts';

/** Register `export-model`. */
export function register(program: Command): void {
  program.command('export-model')
    .description('write a trained model (runs/NAME, a model folder or model.json) as an ONNX file (opset 13) for onnxruntime and others')
    .argument('<RUN>', 'run folder written by `slimfit train`, or a model folder / model.json')
    .addOption(new Option('--format <name>', 'model file format').choices(['onnx']).default('onnx'))
    .option('--out <file>', 'file to write (default: RUN/model.onnx)')
    .option('--include-normalization', "start the graph with the run's normalization, so it takes samples in stored units (e.g. 0-255 pixels)")
    .option('--json', JSON_FLAG)
    .action(async (run: string, o: { format: 'onnx'; out?: string; includeNormalization?: boolean; json?: boolean }) => {
      if (o.json) keepStdoutForJson();
      const { exportModel } = await import('../train/export-model.ts');
      const r = await exportModel(run, { format: o.format, out: o.out, includeNormalization: o.includeNormalization });
      if (o.json) {
        printJson(r);
        return;
      }
      const io = (l: typeof r.inputs) => l.map((x) => `${x.name} [${x.shape.map((d) => d ?? 'batch').join(',')}]`).join(', ');
      process.stdout.write(`wrote ${r.out} (ONNX opset ${r.opset}, ${formatBytes(r.bytes)})\n`);
      process.stdout.write(`input: ${io(r.inputs)} float32, NHWC as tfjs; output: ${io(r.outputs)}\n`);
      if (r.normalizationIncluded) process.stdout.write(`the graph starts with the run's normalization, ${r.normalization}: feed it samples in stored units\n`);
      else if (r.normalization) process.stdout.write(`the run normalized samples before the model: ${r.normalization}; feed the ONNX model the same (or export with --include-normalization)\n`);
    });
}
