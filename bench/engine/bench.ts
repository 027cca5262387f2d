// `npm run bench -- engine`: GEMM GFLOP/s at training shapes (engine vs numpy/OpenBLAS) and end-to-end training
// samples/s for mlp and cnn (fast engine vs plain tfjs wasm vs PyTorch), all measured in the same run.
import { spawnSync } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatBytes } from '../../src/core/rss.ts';
import { loadAddon } from '../../src/engine/addon.ts';
import type { BenchModel } from './models.ts';
import { fmt, markdownTable } from './table.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');

/** A GEMM shape at which a training step multiplies: C[M,N] = op(A)·op(B) with K the inner size. */
export interface GemmShape { name: string; M: number; N: number; K: number; transA: boolean; transB: boolean }

/** The GEMMs of one training step of the bench's mlp and cnn (batch 128). */
export const TRAINING_SHAPES: GemmShape[] = [
  { name: 'mlp fwd 784→512', M: 128, N: 512, K: 784, transA: false, transB: false },
  { name: 'mlp fwd 512→512', M: 128, N: 512, K: 512, transA: false, transB: false },
  { name: 'mlp dW 784×512', M: 784, N: 512, K: 128, transA: true, transB: false },
  { name: 'mlp dX 512→784', M: 128, N: 784, K: 512, transA: false, transB: true },
  { name: 'cnn conv2 fwd (im2col)', M: 128 * 121, N: 64, K: 288, transA: false, transB: false },
  { name: 'cnn conv2 dW', M: 288, N: 64, K: 128 * 121, transA: true, transB: false },
  { name: 'cnn conv2 dX (col)', M: 128 * 121, N: 288, K: 64, transA: false, transB: true },
  { name: 'cnn dense 1600→128', M: 128, N: 128, K: 1600, transA: false, transB: false },
];

/** One GEMM row (GFLOP/s): engine (default kernel), engine through OpenBLAS (if linked), numpy on all cores and on one
 * thread, and engine / the faster numpy. */
export interface GemmRow { shape: GemmShape; engine: number; engineOpenblas: number | null; numpy: number | null; numpy1: number | null; ratio: number | null }

/** One training row: samples/s and peak RSS of one model on one engine (null with a note when it could not run). */
export interface TrainRow {
  model: BenchModel; engine: 'fast engine, fused step' | 'fast engine' | 'tfjs wasm' | 'PyTorch';
  samplesPerSec: number | null;
  /** Samples per second of CPU time summed over the process's threads (independent of other load on the machine). */
  samplesPerCpuSec: number | null;
  peakRss: number | null; note: string;
}

/** Options of benchEngine. */
export interface EngineBenchOptions {
  /** Seconds per GEMM round (3 rounds per shape and implementation, the best is reported); default 0.3. */
  gemmSeconds?: number;
  /** Samples per timed training epoch for mlp and cnn (plain wasm uses fewer: it is slow); defaults 12800 / 3840. */
  samples?: Partial<Record<BenchModel, number>>;
  batch?: number;
  models?: BenchModel[];
  /** The Python with torch (default /usr/bin/python3) and the one with numpy (default python3). */
  torchPython?: string;
  numpyPython?: string;
  /** Progress lines go here (default: nowhere). */
  log?: (line: string) => void;
}

/** Full results of the engine benchmark. */
export interface EngineBenchResult { info: string; load: string; numpyBlas: string; gemm: GemmRow[]; train: TrainRow[] }

function gemmRate(shape: GemmShape, seconds: number, rounds: number): number {
  const { addon } = loadAddon();
  const { M, N, K, transA, transB } = shape;
  const buf = new ArrayBuffer(4 * (M * K + K * N + M * N));
  const f = new Float32Array(buf);
  for (let i = 0; i < f.length; i++) f[i] = ((i * 37) % 101) / 101;
  const run = (): void => addon!.gemm(buf, +transA, +transB, M, N, K, 0, transA ? M : K, 4 * M * K, transB ? K : N, 4 * (M * K + K * N), N, 1, 0, 0, 0, -1, 0, 0);
  run();
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let reps = 0, dt = 0;
    const t0 = performance.now();
    do { run(); reps++; dt = (performance.now() - t0) / 1000; } while (dt < seconds / rounds);
    rates.push((2 * M * N * K * reps) / dt / 1e9);
  }
  return Math.max(...rates);
}

/** Run a child (node or python) that prints one JSON line; returns it parsed or an error note. */
function child(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { json: Record<string, unknown> | null; note: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 1 << 24, timeout: 20 * 60_000 });
  if (r.error) return { json: null, note: `${cmd}: ${r.error.message}` };
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (r.status !== 0 || !line) return { json: null, note: `${cmd} failed: ${(r.stderr || r.stdout).trim().split('\n').filter(Boolean).slice(-1)[0] ?? `exit ${r.status}`}`.slice(0, 200) };
  return { json: JSON.parse(line) as Record<string, unknown>, note: '' };
}

/** Measure everything; throws a clear Error when the native engine is not built. */
export function benchEngine(opts: EngineBenchOptions = {}): EngineBenchResult {
  const { addon, note } = loadAddon();
  if (!addon) throw new Error(`${note}; bench engine needs the native engine`);
  const log = opts.log ?? (() => {});
  const load = loadavg().map((l) => l.toFixed(1)).join(' ');
  const info = addon.info();
  const secs = opts.gemmSeconds ?? 0.3;
  const batch = opts.batch ?? 128;
  const models = opts.models ?? ['mlp', 'cnn'];

  log('GEMM: numpy/OpenBLAS …');
  const npArgs = [join(ROOT, 'bench', 'engine-numpy.py'), JSON.stringify(TRAINING_SHAPES.map((s) => [s.name, s.M, s.N, s.K, s.transA, s.transB])), String(secs * 3), '3'];
  const np = child(opts.numpyPython ?? 'python3', npArgs);
  // numpy's OpenBLAS on one thread too: its spinning threads lose badly when the machine is busy
  const np1 = child(opts.numpyPython ?? 'python3', npArgs, { ...process.env, OPENBLAS_NUM_THREADS: '1' });
  const npRows = (np.json?.rows ?? []) as { name: string; gflops: number }[];
  const np1Rows = (np1.json?.rows ?? []) as { name: string; gflops: number }[];
  log('GEMM: engine …');
  const defaultOwn = info.forceOwn;
  const gemm: GemmRow[] = TRAINING_SHAPES.map((shape) => {
    addon.setForceOwn(defaultOwn);
    const engine = gemmRate(shape, secs * 3, 3);
    let engineOpenblas: number | null = null;
    if (info.blas === 'openblas') {
      addon.setForceOwn(false);
      engineOpenblas = gemmRate(shape, secs * 3, 3);
      addon.setForceOwn(defaultOwn);
    }
    const numpy = npRows.find((r) => r.name === shape.name)?.gflops ?? null;
    const numpy1 = np1Rows.find((r) => r.name === shape.name)?.gflops ?? null;
    const best = Math.max(numpy ?? 0, numpy1 ?? 0);
    return { shape, engine, engineOpenblas, numpy, numpy1, ratio: best > 0 ? engine / best : null };
  });

  const train: TrainRow[] = [];
  const cpus = availableParallelism();
  const childTs = join(HERE, 'train-child.ts');
  for (const model of models) {
    const n = opts.samples?.[model] ?? (model === 'mlp' ? 12800 : 3840);
    const slowN = Math.max(batch * 4, Math.round(n / (model === 'mlp' ? 10 : 5) / batch) * batch);
    const one = { ...process.env, SLIMFIT_THREADS: '1' };
    const runs: [TrainRow['engine'], string, string[], NodeJS.ProcessEnv?][] = [
      // the path slimfit's trainer takes for a Dense chain + Adam (src/engine/dense-step.ts); other models have none
      ...(model === 'mlp' ? [
        ['fast engine, fused step', process.execPath, ['--import', 'tsx', childTs, model, 'fused', String(n), String(batch)]],
        ['fast engine, fused step', process.execPath, ['--import', 'tsx', childTs, model, 'fused', String(n), String(batch)], one],
      ] as [TrainRow['engine'], string, string[], NodeJS.ProcessEnv?][] : []),
      ['fast engine', process.execPath, ['--import', 'tsx', childTs, model, 'engine', String(n), String(batch)]],
      ['fast engine', process.execPath, ['--import', 'tsx', childTs, model, 'engine', String(n), String(batch)], one],
      ['tfjs wasm', process.execPath, ['--import', 'tsx', childTs, model, 'wasm', String(slowN), String(batch)]],
      // PyTorch on all cores and on one thread (its default here; OpenMP spin-waits suffer on a busy machine)
      ['PyTorch', opts.torchPython ?? '/usr/bin/python3', [join(ROOT, 'bench', 'engine-torch.py'), model, String(n), String(batch), String(cpus)]],
      ['PyTorch', opts.torchPython ?? '/usr/bin/python3', [join(ROOT, 'bench', 'engine-torch.py'), model, String(n), String(batch), '1']],
    ];
    for (const [engine, cmd, args, env] of runs) {
      log(`train ${model} on ${engine}${env ? ' (1 thread)' : ''} …`);
      const r = child(cmd, args, env);
      const j = r.json;
      const extra = j && engine === 'PyTorch' ? `torch ${String(j.version)}, ${String(j.threads)} thread${Number(j.threads) === 1 ? '' : 's'}` : j ? String(j.note ?? '') : r.note;
      train.push({ model, engine, samplesPerSec: j ? Number(j.samplesPerSec) : null, samplesPerCpuSec: j ? Number(j.samplesPerCpuSec) : null, peakRss: j ? Number(j.peakRss) : null, note: extra });
    }
  }
  const engineName = `${info.forceOwn || info.blas === 'own' ? 'own' : 'OpenBLAS'} GEMM, ${info.isa}, ${info.threads} thread${info.threads === 1 ? '' : 's'}`;
  return { info: engineName, load, numpyBlas: np.json ? `numpy ${String(np.json.numpy)} (${String(np.json.blas)})` : np.note, gemm, train };
}

/** The results as markdown (two tables with ratios, peak RSS). */
export function engineReport(r: EngineBenchResult): string {
  const gemm = markdownTable(['GEMM (float32)', 'M×N×K', 'engine GFLOP/s', 'engine via OpenBLAS', 'numpy GFLOP/s', 'numpy 1 thread', 'engine / best numpy'],
    r.gemm.map((g) => [g.shape.name, `${g.shape.M}×${g.shape.N}×${g.shape.K}${g.shape.transA ? ' (Aᵀ)' : ''}${g.shape.transB ? ' (Bᵀ)' : ''}`,
      fmt(g.engine), fmt(g.engineOpenblas), fmt(g.numpy), fmt(g.numpy1), g.ratio == null ? '–' : `${fmt(g.ratio, 2)}x`]));
  // the ratio is against the faster PyTorch configuration of the two measured
  const torch = (m: BenchModel): number | null => {
    const xs = r.train.filter((t) => t.model === m && t.engine === 'PyTorch' && t.samplesPerSec != null).map((t) => t.samplesPerSec!);
    return xs.length ? Math.max(...xs) : null;
  };
  const train = markdownTable(['model', 'engine', 'samples/s', 'vs best PyTorch', 'samples per CPU-second', 'peak RSS', 'note'],
    r.train.map((t) => {
      const p = torch(t.model);
      return [t.model, t.engine, fmt(t.samplesPerSec, 0), t.samplesPerSec != null && p ? `${fmt(t.samplesPerSec / p, 2)}x` : '–', fmt(t.samplesPerCpuSec, 0), t.peakRss ? formatBytes(t.peakRss) : '–', t.note];
    }));
  return `Load average (1/5/15 min) at start: ${r.load}. Engine: ${r.info}. Peer BLAS: ${r.numpyBlas}. GEMM: best of 3 timed rounds each (robust to other load).\n\n${gemm}\n\nTraining (batch 128, Adam 1e-3, random data, one timed epoch after warm-up; each run in its own process):\n\n${train}\n`;
}
