// `npm run bench -- bf16`: the mlp's training rate in the opt-in bf16 matmul precision against float32 and against
// PyTorch (float32 and bf16 autocast), in alternating rounds (each contender once per round, each run its own
// process), reported as medians with the load average: on a busy machine only ratios within one round sequence mean
// anything. Also the fused step on the AVX512_BF16 kernel where the CPU has AMX too (what a CPU without AMX runs).
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAddon } from '../../src/engine/addon.ts';
import { child } from './bench.ts';
import { fmt, markdownTable } from './table.ts';
import { medianOrNull } from '../../dev/median.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');

/** Options of benchBf16Training. */
export interface Bf16TrainOptions { rounds?: number; samples?: number; batch?: number; torchPython?: string; log?: (line: string) => void }

/** One contender's samples/s and samples per CPU-second over the rounds (medians), with a note from its last run. */
export interface Bf16TrainRow { name: string; precision: 'float32' | 'bf16'; threads: number; rates: number[]; cpuRates: number[]; median: number | null; cpuMedian: number | null; note: string }

/** Everything benchBf16Training measured. */
export interface Bf16TrainResult { cpu: string; load: string; loadEnd: string; kernel: string; rounds: number; samples: number; rows: Bf16TrainRow[] }

/** Measure; throws a clear Error when the engine is missing or the CPU has no bf16 kernel. */
export function benchBf16Training(opts: Bf16TrainOptions = {}): Bf16TrainResult {
  const { addon, note } = loadAddon();
  if (!addon) throw new Error(`${note}; bench bf16 needs the native engine`);
  const info = addon.bf16Info();
  if (info.kernel === 'none') throw new Error('this CPU has neither AMX-BF16 nor AVX512_BF16: there is no bf16 mode to measure');
  const rounds = opts.rounds ?? 5, samples = opts.samples ?? 12800, batch = opts.batch ?? 128;
  const nCpu = availableParallelism();
  const py = opts.torchPython ?? '/usr/bin/python3';
  const node = (kind: string, extra: string[] = []): string[] => ['--expose-gc', '--import', 'tsx', join(HERE, 'train-child.ts'), 'mlp', kind, String(samples), String(batch), ...extra];
  const torch = (t: number, p: string): string[] => [join(ROOT, 'bench', 'engine-torch.py'), 'mlp', String(samples), String(batch), String(t), p];
  type C = [string, 'float32' | 'bf16', number, string, string[]];
  const cs: C[] = [
    ['slimfit fused step', 'float32', nCpu, process.execPath, node('fused')],
    ['slimfit fused step', 'bf16', nCpu, process.execPath, node('fused-bf16')],
    ['slimfit fused step', 'bf16', 1, process.execPath, node('fused-bf16')],
    ...(info.kernel === 'amx' && info.avx512bf16 ? [['slimfit fused step, AVX512_BF16 kernel', 'bf16', nCpu, process.execPath, node('fused-bf16', ['avx512bf16'])] as C] : []),
    ['PyTorch', 'float32', 1, py, torch(1, 'float32')],
    ['PyTorch', 'float32', nCpu, py, torch(nCpu, 'float32')],
    ['PyTorch bf16 autocast', 'bf16', 1, py, torch(1, 'bf16')],
    ['PyTorch bf16 autocast', 'bf16', nCpu, py, torch(nCpu, 'bf16')],
  ];
  const rows: Bf16TrainRow[] = cs.map(([name, precision, threads]) => ({ name, precision, threads, rates: [], cpuRates: [], median: null, cpuMedian: null, note: '' }));
  const load = loadavg().map((l) => l.toFixed(1)).join(' ');
  for (let r = 0; r < rounds; r++) {
    cs.forEach(([name, precision, threads, cmd, args], i) => {
      opts.log?.(`round ${r + 1}/${rounds}: ${name} ${precision} (${threads} thread${threads === 1 ? '' : 's'}) …`);
      const t = String(threads);
      const env = cmd === py ? { ...process.env, OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t } : { ...process.env, SLIMFIT_THREADS: t };
      const out = child(cmd, args, env);
      if (!out.json) { rows[i].note = out.note; return; }
      rows[i].rates.push(Number(out.json.samplesPerSec));
      rows[i].cpuRates.push(Number(out.json.samplesPerCpuSec));
      rows[i].note = cmd === py ? `torch ${String(out.json.version)}, ${String(out.json.blasKind)}` : String(out.json.note ?? '');
    });
  }
  for (const row of rows) { row.median = medianOrNull(row.rates); row.cpuMedian = medianOrNull(row.cpuRates); }
  return { cpu: `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${nCpu} cores`, load, loadEnd: loadavg().map((l) => l.toFixed(1)).join(' '), kernel: info.kernel, rounds, samples, rows };
}

/** The results as markdown: medians, per-CPU-second medians, and the ratios that matter. */
export function bf16TrainReport(r: Bf16TrainResult): string {
  const bestOf = (pick: (x: Bf16TrainRow) => boolean): Bf16TrainRow | null => r.rows.filter((x) => pick(x) && x.median != null).reduce<Bf16TrainRow | null>((a, b) => (!a || b.median! > a.median! ? b : a), null);
  const table = markdownTable(['contender', 'precision', 'threads', 'samples/s (median)', 'samples per CPU-second (median)', 'rounds (samples/s)', 'note'],
    r.rows.map((x) => [x.name, x.precision === 'bf16' ? 'bf16 (opt-in)' : 'float32', String(x.threads), fmt(x.median, 0), fmt(x.cpuMedian, 0), x.rates.map((v) => fmt(v, 0)).join(' '), x.note]));
  const s32 = bestOf((x) => x.name === 'slimfit fused step' && x.precision === 'float32');
  const s16 = bestOf((x) => x.name === 'slimfit fused step' && x.precision === 'bf16');
  const t32 = bestOf((x) => x.name === 'PyTorch');
  const t16 = bestOf((x) => x.name === 'PyTorch bf16 autocast');
  // the ratio of medians, and the median of the per-round ratios (both contenders ran in the same round, minutes
  // apart at most: steadier when the load moves)
  const ratio = (a: Bf16TrainRow | null, b: Bf16TrainRow | null): string => {
    if (!a || !b) return '–';
    const per = a.rates.length === b.rates.length ? medianOrNull(a.rates.map((v, i) => v / b.rates[i])) : null;
    return `${fmt(a.median! / b.median!, 2)}x${per != null ? ` (median of per-round ratios ${fmt(per, 2)}x)` : ''}`;
  };
  const lines = [
    `slimfit bf16 / slimfit float32 (best medians): ${ratio(s16, s32)}`,
    `slimfit bf16 / PyTorch bf16 autocast (best medians): ${ratio(s16, t16)}`,
    `PyTorch bf16 autocast / PyTorch float32 (best medians): ${ratio(t16, t32)}`,
    `slimfit float32 / PyTorch float32 (best medians): ${ratio(s32, t32)}`,
  ];
  return `Machine: ${r.cpu}; bf16 kernel ${r.kernel}. Load average (1/5/15 min) at start: ${r.load}, at end: ${r.loadEnd}. mlp 784-512-512-10, batch 128, Adam, ${r.samples} random samples per timed epoch, ${r.rounds} alternating rounds (each run its own process). bf16 rows are the opt-in mixed precision, not float32 results.\n\n${table}\n\n${lines.map((l) => `- ${l}`).join('\n')}\n`;
}
