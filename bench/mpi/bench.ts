// `npm run bench -- mpi STORE`: data-parallel training on this machine, 1 rank x 2 engine threads against 2 MPI ranks x
// 1 thread (same global batch, same data), the time spent in all-reduce per step, and a ring all-reduce model of
// 8 and 64 machines from the measured compute time per step and the parameter bytes.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { BIN, MPIRUN, ROOT, tempDir } from '../../dev/helpers.ts';

/** Options of {@link benchMpi}. */
export interface MpiBenchOptions {
  models: Array<'mlp' | 'cnn'>;
  batch: number;
  /** Epochs per run; the last one is timed (the first warms up). */
  epochs: number;
  log: (line: string) => void;
}

/** One model's measurements. */
export interface MpiModelResult {
  model: string;
  params: number;
  /** samples/s of the timed epoch: one process with 2 engine threads, and 2 ranks with 1 each. */
  single: number;
  ranks2: number;
  /** Steps per epoch (global batches). */
  steps: number;
  /** Rank 0's seconds in MPI_Allreduce per step during training (gradients + metrics, waiting for the other rank included). */
  allreducePerStep: number;
  /** One all-reduce of the parameter-sized buffer after a barrier (transfer only), median. */
  pureAllreduce: number;
}

const run = (cmd: string, args: string[], env: Record<string, string>) => {
  const r = spawnSync(cmd, args, { cwd: ROOT, env: { ...process.env, ...env, FORCE_COLOR: '0' }, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
};

/** Read every shard once so neither contender pays for the page cache (this machine drops it within minutes). */
function warm(store: string): void {
  spawnSync('sh', ['-c', `cat ${JSON.stringify(store)}/*/*.npy > /dev/null`]);
}

/** Measure `opts.models` on `store` (a store with a train split; --val-fraction 0, no test evaluation). */
export function benchMpi(store: string, opts: MpiBenchOptions): { results: MpiModelResult[]; load: [number, number]; markdown: string } {
  if (!MPIRUN) throw new Error('mpirun not found: apt-get install openmpi-bin libopenmpi-dev, then npm run build:native');
  const tmp = tempDir('slimfit-bench-mpi-');
  const load0 = loadavg()[0];
  const results: MpiModelResult[] = [];
  let split: { fused: number; split: number } | null = null;
  try {
    for (const model of opts.models) {
      const args = (out: string) => [BIN, 'train', store, '--model', model, '--epochs', String(opts.epochs), '--batch', String(opts.batch), '--val-fraction', '0', '--no-test', '--workers', '1', '--json', '--out', out];
      const lastEpoch = (out: string) => JSON.parse(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').at(-1)!) as { samplesPerSec: number; samples: number };
      warm(store);
      const a = join(tmp.dir, `${model}-1x2`);
      opts.log(`${model}: 1 rank x 2 threads`);
      run(process.execPath, args(a), { SLIMFIT_THREADS: '2' });
      warm(store);
      const b = join(tmp.dir, `${model}-2x1`);
      opts.log(`${model}: 2 ranks x 1 thread`);
      const out2 = run(MPIRUN, ['--allow-run-as-root', '--oversubscribe', '-np', '2', '-x', 'SLIMFIT_THREADS=1', process.execPath, ...args(b)], {});
      const json: { parallel?: { allreduceSeconds: number; allreduceCalls: number } } = JSON.parse(out2.slice(out2.indexOf('{')));
      const la = lastEpoch(a), lb = lastEpoch(b);
      const steps = Math.ceil(lb.samples / opts.batch);
      const weights = readFileSync(join(b, 'model', 'weights.bin')).length / 4;
      const params = (weights - 1) / 3; // weights, Adam's two moments, and the step count
      opts.log(`${model}: one all-reduce of ${params} floats`);
      const pure = Number(/allreduce-seconds=([\d.e-]+)/.exec(run(MPIRUN, ['--allow-run-as-root', '--oversubscribe', '-np', '2', process.execPath, '--import', 'tsx', join(ROOT, 'bench', 'mpi', 'allreduce.ts'), String(params), '30'], {}))?.[1]);
      const p = json.parallel;
      results.push({
        model, params, single: la.samplesPerSec, ranks2: lb.samplesPerSec, steps,
        allreducePerStep: p ? p.allreduceSeconds / (steps * opts.epochs) : NaN, pureAllreduce: pure,
      });
    }
    if (opts.models.includes('mlp')) {
      opts.log('mlp: the fused step in one call vs split for all-reduce (no-op reduce), one process');
      const m = /fused-ms=([\d.e-]+) split-ms=([\d.e-]+)/.exec(run(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'mpi', 'split-step.ts'), String(opts.batch / 2)], { SLIMFIT_THREADS: '1' }));
      if (m) split = { fused: Number(m[1]), split: Number(m[2]) };
    }
  } finally {
    tmp.cleanup();
  }
  const load: [number, number] = [load0, loadavg()[0]];
  return { results, load, markdown: report(results, opts, load, split) };
}

/** Ring all-reduce seconds for `bytes` over `n` machines at `gbit` Gbit/s (bandwidth term only). */
export function ringSeconds(bytes: number, n: number, gbit: number): number {
  return (2 * (n - 1) / n) * bytes / (gbit * 1e9 / 8);
}

function report(rs: MpiModelResult[], o: MpiBenchOptions, load: [number, number], split: { fused: number; split: number } | null): string {
  const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const ms = (s: number) => `${(s * 1000).toFixed(2)} ms`;
  const lines = [
    `Data-parallel training on this machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), 1-minute load average ${load[0].toFixed(1)} before, ${load[1].toFixed(1)} after; global batch ${o.batch}, Adam, epoch ${o.epochs} of ${o.epochs} timed; ${new Date().toISOString()}.`,
    '',
    '| model | parameters | 1 rank x 2 threads | 2 ranks x 1 thread | ratio | all-reduce per step in training (incl. waiting) | one all-reduce of the gradients (after a barrier) |',
    '|---|---|---|---|---|---|---|',
    ...rs.map((r) => `| ${r.model} | ${r.params} (${(r.params * 4 / 1e6).toFixed(2)} MB) | ${f(r.single)} samples/s | ${f(r.ranks2)} samples/s | ${(r.ranks2 / r.single).toFixed(2)} | ${ms(r.allreducePerStep)} | ${ms(r.pureAllreduce)} |`),
    '',
    ...(split ? [`The mlp's fused step split for all-reduce (gradients into a buffer, reduce, Adam per tensor; no-op reduce, 1 thread, per-rank batch ${o.batch / 2}): ${split.split.toFixed(2)} ms per step vs ${split.fused.toFixed(2)} ms in one call (${(100 * (split.split / split.fused - 1)).toFixed(0)}%).`, ''] : []),
    `Scaling model (weak scaling: every machine like this one computes a batch of ${o.batch} per step in t_c = ${o.batch} / (1 rank x 2 threads samples/s); ring all-reduce moves 2(N-1)/N x 4 x parameters bytes per step; no overlap of compute and communication; bandwidth term only — each all-reduce also pays about 2(N-1) network latencies):`,
    '',
    '| model | t_c per step | N | network | all-reduce per step | samples/s (N machines) | efficiency |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rs) {
    const tc = o.batch / r.single;
    for (const n of [8, 64]) {
      for (const g of [10, 100]) {
        const ta = ringSeconds(r.params * 4, n, g);
        lines.push(`| ${r.model} | ${ms(tc)} | ${n} | ${g} Gbit/s | ${ms(ta)} | ${f(n * o.batch / (tc + ta))} | ${(100 * tc / (tc + ta)).toFixed(0)}% |`);
      }
    }
  }
  return lines.join('\n') + '\n';
}
