// `npm run bench -- engine|bf16|dtypes`: the fast engine measured against its peers in the same run.
import type { Command } from 'commander';
import { SlimfitError } from '../../src/core/errors.ts';

/** Register the engine benchmarks (`npm run bench -- engine|dtypes`). */
export function register(program: Command): void {
  const bench = program;
  bench.command('engine')
    .description('GEMM GFLOP/s at training shapes vs numpy/OpenBLAS, and mlp/cnn training samples/s: fast engine vs tfjs wasm vs PyTorch; where the CPU has bf16, opt-in bf16 GEMM and mlp rows (vs PyTorch bf16 autocast) reported apart')
    .option('--models <list>', 'models to train: mlp,cnn', 'mlp,cnn')
    .option('--samples <n>', 'samples per timed epoch (per model; plain wasm uses fewer)')
    .option('--gemm-seconds <s>', 'seconds per GEMM round (best of 3 rounds)', '0.3')
    .option('--rounds <n>', 'interleaved rounds of the training rows (medians reported)', '3')
    .option('--torch-python <path>', 'Python with torch', '/usr/bin/python3')
    .option('--json', 'print the results as one JSON object (EngineBenchResult in bench/engine/bench.ts) instead of markdown')
    .action(async (o: { models: string; samples?: string; gemmSeconds: string; rounds: string; torchPython: string; json?: boolean }) => {
      const { benchEngine, engineReport } = await import('../engine/bench.ts');
      const models = o.models.split(',').map((s) => s.trim());
      for (const m of models) if (m !== 'mlp' && m !== 'cnn') throw new SlimfitError(`unknown model '${m}'`, { hint: 'use --models mlp,cnn' });
      const n = o.samples ? Number(o.samples) : undefined;
      if (n !== undefined && !(n >= 128)) throw new SlimfitError(`--samples must be a number >= 128, got '${o.samples}'`);
      const rounds = Number(o.rounds);
      if (!(Number.isInteger(rounds) && rounds >= 1)) throw new SlimfitError(`--rounds must be a whole number >= 1, got '${o.rounds}'`);
      let r;
      try {
        r = benchEngine({ models: models as ('mlp' | 'cnn')[], gemmSeconds: Number(o.gemmSeconds), trainRounds: rounds, torchPython: o.torchPython,
          samples: n ? { mlp: n, cnn: n } : undefined, log: (l) => process.stderr.write(`${l}\n`) });
      } catch (e) {
        throw new SlimfitError((e as Error).message, { hint: 'build it with `npm run build:native` (needs g++)' });
      }
      process.stdout.write(o.json ? `${JSON.stringify(r)}\n` : engineReport(r));
    });
  bench.command('bf16')
    .description('mlp training in the opt-in bf16 matmul precision vs float32 and vs PyTorch (float32, bf16 autocast): alternating rounds, medians')
    .option('--rounds <n>', 'alternating rounds', '5')
    .option('--samples <n>', 'samples per timed epoch', '12800')
    .option('--torch-python <path>', 'Python with torch', '/usr/bin/python3')
    .action(async (o: { rounds: string; samples: string; torchPython: string }) => {
      const { benchBf16Training, bf16TrainReport } = await import('../engine/bf16.ts');
      const rounds = Number(o.rounds), samples = Number(o.samples);
      if (!(Number.isInteger(rounds) && rounds >= 1)) throw new SlimfitError(`--rounds must be a whole number >= 1, got '${o.rounds}'`);
      if (!(samples >= 128)) throw new SlimfitError(`--samples must be a number >= 128, got '${o.samples}'`);
      let r;
      try {
        r = benchBf16Training({ rounds, samples, torchPython: o.torchPython, log: (l) => process.stderr.write(`${l}\n`) });
      } catch (e) {
        throw new SlimfitError((e as Error).message, { hint: 'build the engine with `npm run build:native`; the bf16 mode needs AMX-BF16 or AVX512_BF16' });
      }
      process.stdout.write(bf16TrainReport(r));
    });
  bench.command('dtypes')
    .description('the same GEMM in float64, float32, bfloat16 (AVX512_BF16) and int8 (AVX512_VNNI): GFLOP/s and ratio to float32')
    .option('--shape <MxNxK>', 'one GEMM shape instead of the defaults, e.g. 1024x1024x1024')
    .option('--seconds <s>', 'seconds per measurement', '0.6')
    .action(async (o: { shape?: string; seconds: string }) => {
      const { benchDtypes, dtypesTable } = await import('../engine/dtypes.ts');
      let shapes: [number, number, number][] | undefined;
      if (o.shape) {
        const m = /^(\d+)x(\d+)x(\d+)$/.exec(o.shape);
        if (!m) throw new SlimfitError(`--shape must look like 1024x1024x1024, got '${o.shape}'`);
        shapes = [[Number(m[1]), Number(m[2]), Number(m[3])]];
      }
      try {
        process.stdout.write(`${dtypesTable(benchDtypes({ shapes, seconds: Number(o.seconds) }))}\n`);
      } catch (e) {
        throw new SlimfitError((e as Error).message, { hint: 'build it with `npm run build:native` (needs g++)' });
      }
    });
}
