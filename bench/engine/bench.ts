// `npm run bench -- engine`: GEMM GFLOP/s at training shapes (engine vs numpy/OpenBLAS) and end-to-end training
// samples/s for mlp and cnn (fast engine vs plain tfjs wasm vs PyTorch), all measured in the same run.
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatBytes } from '../../src/core/rss.ts';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import { gemmModeLabel, loadAddon } from '../../src/engine/addon.ts';
import { buildBenchModel, type BenchModel, type TrainingFlops, trainingFlops } from './models.ts';
import { fmt, markdownTable } from './table.ts';
import { medianOrNull } from '../../dev/median.ts';
import { CEILING_SHAPE, ceilingNow, ENGINE_GEMMS, type EngineGemm, engineGemms, gemmRate, gemmRunner, type GemmShape } from './gemm-rate.ts';

export { CEILING_SHAPE, type GemmShape } from './gemm-rate.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');

/**
 * The GEMMs of one float32 training step of the bench's mlp and cnn (batch 128). The fused Dense step keeps the mlp's
 * hidden activations feature-major ([units, batch]) and transposes the batch x into xᵀ [784, batch] first, so its
 * products are zᵀ = Wᵀ·xᵀ, Wᵀ·aᵀ, dW = xᵀ·dz (xᵀ stored [784, batch], dzᵀ [512, batch]) and daᵀ = W·dzᵀ.
 */
export const TRAINING_SHAPES: GemmShape[] = [
  { name: 'mlp fwd 784→512', M: 512, N: 128, K: 784, transA: true, transB: false },
  { name: 'mlp fwd 512→512', M: 512, N: 128, K: 512, transA: true, transB: false },
  { name: 'mlp dW 784×512', M: 784, N: 512, K: 128, transA: false, transB: true },
  { name: 'mlp dX 512→512', M: 512, N: 128, K: 512, transA: false, transB: false },
  { name: 'cnn conv2 fwd (im2col)', M: 128 * 121, N: 64, K: 288, transA: false, transB: false },
  { name: 'cnn conv2 dW', M: 288, N: 64, K: 128 * 121, transA: true, transB: false },
  { name: 'cnn conv2 dX (col)', M: 128 * 121, N: 288, K: 64, transA: false, transB: true },
  { name: 'cnn dense 1600→128', M: 128, N: 128, K: 1600, transA: false, transB: false },
];

/**
 * One GEMM row (GFLOP/s): the engine's default mode, its own kernels, oneDNN and OpenBLAS inside it (null when not
 * linked), which library the default mode takes for this shape, numpy on all cores and on one thread, and default /
 * best numpy.
 */
export interface GemmRow {
  shape: GemmShape; engine: number; own: number; engineOnednn: number | null; engineOpenblas: number | null; choice: 'own' | 'OpenBLAS' | 'oneDNN';
  numpy: number | null; numpy1: number | null; ratio: number | null;
}

/** One training row: samples/s and peak RSS of one model on one engine (null with a note when it could not run). */
export interface TrainRow {
  model: BenchModel;
  /** The bf16 rows are the opt-in mixed precision (slimfit's matmulPrecision 'bf16', PyTorch's CPU autocast to bfloat16): a different precision, never compared with float32 rows. */
  engine: 'fast engine, fused step' | 'fast engine' | 'tfjs wasm' | 'PyTorch' | 'fast engine, fused step, bf16' | 'PyTorch, bf16 autocast';
  /** Threads the run was given (the engine's pool, or PyTorch's intra-op threads and its BLAS's). */
  threads: number;
  /** The median over the rounds (each round runs every row once, in its own process). */
  samplesPerSec: number | null;
  /** Samples per second of CPU time summed over the process's threads (independent of other load on the machine); median over the rounds. */
  samplesPerCpuSec: number | null;
  /** samples/s of each round. */
  rounds: number[];
  /**
   * Fraction of the float32 ceiling measured beside the row: in each round every GEMM mode of the engine (own, and
   * oneDNN and OpenBLAS where linked) is timed at 2048³ right before and right after the row's run (seconds apart),
   * the better of the two per mode taken; the row's GFLOP/s over the best mode, median over the rounds (null: no FLOP
   * count or no run).
   */
  ofCeiling: number | null;
  /** The same over the better of the engine's OpenBLAS and its own GEMM (without oneDNN, the faster library here). */
  ofBlasOwnCeiling: number | null;
  /** Per round with a run: the best mode's GFLOP/s at 2048³ beside it. */
  ceilingRounds: number[];
  peakRss: number | null; note: string;
  /** PyTorch rows: the BLAS library its process mapped, and its kind ('reference' = Debian's unoptimized netlib BLAS). */
  blas?: string; blasKind?: string;
}

/** Whether a training row is one of the opt-in bf16 rows. */
export const isBf16Row = (t: TrainRow): boolean => t.engine.endsWith('bf16') || t.engine.endsWith('bf16 autocast');

/** The GEMM shapes of the mlp's bf16 training step (sample-major activations) and the ceiling shape, where the bf16 GEMM is measured. */
export const BF16_SHAPES: GemmShape[] = [
  { name: 'mlp fwd 784→512', M: 128, N: 512, K: 784, transA: false, transB: false },
  { name: 'mlp fwd 512→512', M: 128, N: 512, K: 512, transA: false, transB: false },
  { name: 'mlp dW 784×512', M: 784, N: 512, K: 128, transA: true, transB: false },
  { name: 'mlp dX 512→512', M: 128, N: 512, K: 512, transA: false, transB: true },
  CEILING_SHAPE,
];

/**
 * One bf16 GEMM row (GFLOP/s, counting 2·M·N·K as for float32): each bf16 kernel this CPU has (null: absent), the
 * float32 GEMMs of the engine measured in the same interleaved rounds, and best bf16 / best float32.
 */
export interface Bf16GemmRow { shape: GemmShape; amx: number | null; avx512bf16: number | null; own: number; onednn: number | null; openblas: number | null; ratio: number }

/** Options of benchEngine. */
export interface EngineBenchOptions {
  /** Seconds per GEMM round (3 rounds per shape and implementation, the best is reported); default 0.3. */
  gemmSeconds?: number;
  /** Samples per timed training epoch for mlp and cnn (plain wasm uses fewer: it is slow); defaults 12800 / 3840. */
  samples?: Partial<Record<BenchModel, number>>;
  /** Interleaved rounds of the training rows (each round runs every row once); medians are reported. Default 3. */
  trainRounds?: number;
  batch?: number;
  models?: BenchModel[];
  /** The Python with torch (default /usr/bin/python3) and the one with numpy (default python3). */
  torchPython?: string;
  numpyPython?: string;
  /** Progress lines go here (default: nowhere). */
  log?: (line: string) => void;
}

/** The machine's float32 GEMM ceiling at CEILING_SHAPE: each contender's GFLOP/s and the best. */
export interface Ceiling { own: number; engineOnednn: number | null; engineOpenblas: number | null; numpy: number | null; best: number }

/** Full results of the engine benchmark. */
export interface EngineBenchResult {
  info: string; load: string; loadEnd: string; cpu: string; numpyBlas: string; gemm: GemmRow[]; ceiling: Ceiling; trainRounds: number;
  /** The opt-in bf16 GEMM (empty when the CPU has no bf16 kernel; then `bf16Note` says why). */
  bf16Gemm: Bf16GemmRow[]; bf16Note: string;
  flops: Partial<Record<BenchModel, TrainingFlops>>; train: TrainRow[];
}

/**
 * float32 (own, and each library linked into the engine) and bf16 (each kernel) GEMM rates at one shape, in
 * interleaved rounds (so a load change on the machine hits all alike); the best round of each.
 */
function bf16GemmRow(shape: GemmShape, seconds: number, rounds: number, kernels: ('amx' | 'avx512bf16')[], libs: EngineGemm[]): Bf16GemmRow {
  const { addon } = loadAddon();
  const { M, N, K, transA, transB } = shape;
  const { run: gemm, A, B, C } = gemmRunner(shape);
  const mode = addon!.info().gemm;
  const f32 = (m: EngineGemm) => (): void => {
    addon!.setGemmMode(m);
    gemm();
  };
  const runs: [string, () => void][] = [['own', f32('own')], ...libs.map((l): [string, () => void] => [l, f32(l)]),
    ...kernels.map((k): [string, () => void] => [k, () => { addon!.gemmBf16(k, +transA, +transB, M, N, K, A, B, C); }])];
  const best = new Map<string, number>();
  for (const [, run] of runs) run();
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of runs) {
      let reps = 0, dt = 0;
      const t0 = performance.now();
      do { run(); reps++; dt = (performance.now() - t0) / 1000; } while (dt < seconds / rounds / runs.length);
      best.set(name, Math.max(best.get(name) ?? 0, (2 * M * N * K * reps) / dt / 1e9));
    }
  }
  addon!.setGemmMode(mode);
  const amx = best.get('amx') ?? null, avx = best.get('avx512bf16') ?? null, own = best.get('own')!;
  const onednn = best.get('onednn') ?? null, openblas = best.get('openblas') ?? null;
  return { shape, amx, avx512bf16: avx, own, onednn, openblas, ratio: Math.max(amx ?? 0, avx ?? 0) / Math.max(own, onednn ?? 0, openblas ?? 0) };
}

/** Run a child (node or python) that prints one JSON line; returns it parsed or an error note (also used by bf16.ts). */
export function child(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { json: Record<string, unknown> | null; note: string } {
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
  const libs = engineGemms().filter((m) => m !== 'own');

  log('GEMM: numpy/OpenBLAS …');
  const npShapes = [...TRAINING_SHAPES, CEILING_SHAPE];
  const npArgs = [join(ROOT, 'bench', 'engine-numpy.py'), JSON.stringify(npShapes.map((s) => [s.name, s.M, s.N, s.K, s.transA, s.transB])), String(secs * 3), '3'];
  const np = child(opts.numpyPython ?? 'python3', npArgs);
  // numpy's OpenBLAS on one thread too: its spinning threads lose badly when the machine is busy
  const np1 = child(opts.numpyPython ?? 'python3', npArgs, { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' });
  const npRows = (np.json?.rows ?? []) as { name: string; gflops: number }[];
  const np1Rows = (np1.json?.rows ?? []) as { name: string; gflops: number }[];
  const npRate = (rows: { name: string; gflops: number }[], s: GemmShape): number | null => rows.find((r) => r.name === s.name)?.gflops ?? null;
  log('GEMM: engine …');
  const rateIn = (mode: EngineGemm | '', shape: GemmShape): number => gemmRate(shape, secs * 3, 3, mode);
  const gemm: GemmRow[] = TRAINING_SHAPES.map((shape) => {
    const engine = rateIn('', shape);
    const own = rateIn('own', shape);
    const engineOnednn = info.onednn ? rateIn('onednn', shape) : null;
    const engineOpenblas = info.openblas ? rateIn('openblas', shape) : null;
    const choice = !addon.gemmUsesBlas(+shape.transA, +shape.transB, shape.M, shape.N, shape.K) ? 'own' : info.blas === 'onednn' ? 'oneDNN' : 'OpenBLAS';
    const numpy = npRate(npRows, shape), numpy1 = npRate(np1Rows, shape);
    const best = Math.max(numpy ?? 0, numpy1 ?? 0);
    return { shape, engine, own, engineOnednn, engineOpenblas, choice, numpy, numpy1, ratio: best > 0 ? engine / best : null };
  });
  log('GEMM: ceiling at 2048³ …');
  const cOwn = rateIn('own', CEILING_SHAPE);
  const cDnnl = info.onednn ? rateIn('onednn', CEILING_SHAPE) : null;
  const cBlas = info.openblas ? rateIn('openblas', CEILING_SHAPE) : null;
  const cNumpy = Math.max(npRate(npRows, CEILING_SHAPE) ?? 0, npRate(np1Rows, CEILING_SHAPE) ?? 0) || null;
  const ceiling: Ceiling = { own: cOwn, engineOnednn: cDnnl, engineOpenblas: cBlas, numpy: cNumpy, best: Math.max(cOwn, cDnnl ?? 0, cBlas ?? 0, cNumpy ?? 0) };

  const b16 = addon.bf16Info();
  const kernels = (['amx', 'avx512bf16'] as const).filter((k) => (k === 'amx' ? b16.amx : b16.avx512bf16));
  const bf16Note = b16.kernel === 'none' ? 'this CPU has neither AMX-BF16 nor AVX512_BF16: no bf16 rows' : b16.amxNote ? `AMX not used: ${b16.amxNote}` : '';
  log(kernels.length ? 'GEMM: bf16 (opt-in precision) vs float32 …' : 'GEMM: no bf16 kernel on this CPU');
  const bf16Gemm = kernels.length ? BF16_SHAPES.map((s) => bf16GemmRow(s, secs * 3 * (kernels.length + 1 + libs.length), 3, [...kernels], libs)) : [];

  const flops: Partial<Record<BenchModel, TrainingFlops>> = {};
  for (const model of models) flops[model] = flopsOf(model);

  const train: TrainRow[] = [];
  const nCpu = availableParallelism();
  const childTs = join(HERE, 'train-child.ts');
  type Run = [TrainRow['engine'], string, string[], number];
  const plan: [BenchModel, Run][] = [];
  for (const model of models) {
    const n = opts.samples?.[model] ?? (model === 'mlp' ? 12800 : 3840);
    const slowN = Math.max(batch * 4, Math.round(n / (model === 'mlp' ? 10 : 5) / batch) * batch);
    const node = (kind: string, count: number): string[] => ['--expose-gc', '--import', 'tsx', childTs, model, kind, String(count), String(batch)];
    const torch = join(ROOT, 'bench', 'engine-torch.py');
    const runs: Run[] = [
      // the path slimfit's trainer takes: the fused Dense step (mlp, src/engine/dense-step.ts) or conv step (cnn, conv-step.ts)
      ...(model === 'mlp' || model === 'cnn' ? [
        ['fast engine, fused step', process.execPath, node('fused', n), nCpu],
        ['fast engine, fused step', process.execPath, node('fused', n), 1],
      ] as Run[] : []),
      ['fast engine', process.execPath, node('engine', n), nCpu],
      ['fast engine', process.execPath, node('engine', n), 1],
      ['tfjs wasm', process.execPath, node('wasm', slowN), 1],
      // PyTorch on all cores and on one thread; its OpenMP and BLAS thread counts are set to the row's, so "1 thread"
      // is one thread (Debian's torch otherwise lets OpenBLAS start one thread per core under it)
      ['PyTorch', opts.torchPython ?? '/usr/bin/python3', [torch, model, String(n), String(batch), String(nCpu)], nCpu],
      ['PyTorch', opts.torchPython ?? '/usr/bin/python3', [torch, model, String(n), String(batch), '1'], 1],
      // the opt-in bf16 mixed precision (a different precision: reported apart), where the CPU has it
      ...(model === 'mlp' && kernels.length ? [
        ['fast engine, fused step, bf16', process.execPath, node('fused-bf16', n), nCpu],
        ['fast engine, fused step, bf16', process.execPath, node('fused-bf16', n), 1],
        ['PyTorch, bf16 autocast', opts.torchPython ?? '/usr/bin/python3', [torch, model, String(n), String(batch), String(nCpu), 'bf16'], nCpu],
        ['PyTorch, bf16 autocast', opts.torchPython ?? '/usr/bin/python3', [torch, model, String(n), String(batch), '1', 'bf16'], 1],
      ] as Run[] : []),
    ];
    for (const r of runs) plan.push([model, r]);
  }
  // every row once per round, rounds one after another, so a change of load reaches every row alike; medians reported
  const rounds = opts.trainRounds ?? 3;
  const got = plan.map(() => ({ rates: [] as number[], cpu: [] as number[], rss: [] as number[], note: '', blas: undefined as string | undefined, blasKind: undefined as string | undefined,
    ceil: [] as number[], ceilBlasOwn: [] as number[] }));
  // The ceiling beside each row: a bracket of every GEMM mode of the engine at 2048³ (~1 s) between consecutive rows
  // (numpy's is a separate process and stays in the start-of-run ceiling); a row's ceiling is the better of the
  // brackets before and after it, per mode.
  const bestOf = (c: Partial<Record<EngineGemm, number>>, modes: readonly EngineGemm[]): number => Math.max(0, ...modes.map((m) => c[m] ?? 0));
  const blasOwn: EngineGemm[] = ['own', 'openblas'];
  let before = ceilingNow(0.3);
  for (let round = 1; round <= rounds; round++) {
    plan.forEach(([model, [engine, cmd, args, threads]], i) => {
      log(`train ${model} on ${engine} (${threads} thread${threads === 1 ? '' : 's'}), round ${round} of ${rounds} …`);
      const t = String(threads);
      const torchRow = engine.startsWith('PyTorch');
      const env = torchRow
        ? { ...process.env, OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t }
        : engine === 'tfjs wasm' ? process.env : { ...process.env, SLIMFIT_THREADS: t };
      const r = child(cmd, args, env);
      const after = ceilingNow(0.3);
      const bracket = bracketCeiling(before, after);
      before = after;
      const j = r.json, g = got[i];
      g.note = j && torchRow ? `torch ${String(j.version)}, ${String(j.blasKind)}${engine.endsWith('autocast') ? ', oneDNN bf16' : ''}` : j ? String(j.note ?? '') : r.note;
      if (!j) return;
      g.rates.push(Number(j.samplesPerSec)); g.cpu.push(Number(j.samplesPerCpuSec)); g.rss.push(Number(j.peakRss));
      g.ceil.push(bestOf(bracket, ENGINE_GEMMS)); g.ceilBlasOwn.push(bestOf(bracket, blasOwn));
      if (torchRow) { g.blas = String(j.blas); g.blasKind = String(j.blasKind); }
    });
  }
  plan.forEach(([model, [engine, , , threads]], i) => {
    const g = got[i];
    const f = flops[model]?.total ?? 0;
    train.push({
      ofCeiling: pairedFraction(g.rates, f, g.ceil), ofBlasOwnCeiling: pairedFraction(g.rates, f, g.ceilBlasOwn), ceilingRounds: g.ceil,
      model, engine, threads: engine === 'tfjs wasm' ? 1 : threads, samplesPerSec: medianOrNull(g.rates), samplesPerCpuSec: medianOrNull(g.cpu),
      rounds: g.rates, peakRss: g.rss.length ? Math.max(...g.rss) : null, note: g.note, ...(g.blas !== undefined ? { blas: g.blas, blasKind: g.blasKind } : {}),
    });
  });
  const engineName = `${gemmModeLabel(info)} GEMM, ${info.isa}, ${info.threads} thread${info.threads === 1 ? '' : 's'}`;
  const loadEnd = loadavg().map((l) => l.toFixed(1)).join(' ');
  return { info: engineName, load, loadEnd, trainRounds: rounds, cpu: `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${availableParallelism()} cores`, numpyBlas: np.json ? `numpy ${String(np.json.numpy)} (${String(np.json.blas)})` : np.note, gemm, ceiling, bf16Gemm, bf16Note, flops, train };
}

/**
 * A run's ceiling from the brackets timed right before and right after it: per GEMM mode the better of the two.
 *
 * @example
 * bracketCeiling({ own: 200, onednn: 310 }, { own: 210, onednn: 300 }); // { own: 210, onednn: 310 }
 */
export function bracketCeiling(before: Partial<Record<EngineGemm, number>>, after: Partial<Record<EngineGemm, number>>): Partial<Record<EngineGemm, number>> {
  const out: Partial<Record<EngineGemm, number>> = {};
  for (const m of ENGINE_GEMMS) {
    const r = Math.max(before[m] ?? 0, after[m] ?? 0);
    if (r > 0) out[m] = r;
  }
  return out;
}

/**
 * The median over rounds of each round's training GFLOP/s over that round's ceiling (null without FLOPs or rounds):
 * a fraction of two rates measured seconds apart, not of the medians of rates measured minutes apart.
 *
 * @example
 * pairedFraction([60000, 66000], 3e6, [300, 330]); // 0.6
 */
export function pairedFraction(samplesPerSec: number[], flopsPerSample: number, ceilings: number[]): number | null {
  if (!flopsPerSample) return null;
  return medianOrNull(samplesPerSec.flatMap((r, k) => (ceilings[k] > 0 ? [(r * flopsPerSample) / 1e9 / ceilings[k]] : [])));
}

/** FLOPs per training sample of a bench model, from its layer shapes (built on tfjs's cpu backend, no training). */
function flopsOf(kind: BenchModel): TrainingFlops {
  const m = buildBenchModel(tfl, kind);
  const f = trainingFlops(m);
  m.dispose();
  return f;
}

/** The results as markdown: GEMM table, ceiling, training table with ratios and fractions of the ceiling. */
export function engineReport(r: EngineBenchResult): string {
  const shape = (s: GemmShape): string => `${s.M}×${s.N}×${s.K}${s.transA ? ' (Aᵀ)' : ''}${s.transB ? ' (Bᵀ)' : ''}`;
  const gemm = markdownTable(['GEMM (float32)', 'M×N×K', 'engine default', 'takes', 'own GEMM', 'oneDNN in engine', 'OpenBLAS in engine', 'numpy', 'numpy 1 thread', 'default / best numpy'],
    r.gemm.map((g) => [g.shape.name, shape(g.shape), fmt(g.engine), g.choice, fmt(g.own), fmt(g.engineOnednn), fmt(g.engineOpenblas), fmt(g.numpy), fmt(g.numpy1), g.ratio == null ? '–' : `${fmt(g.ratio, 2)}x`]));
  const c = r.ceiling;
  const ceiling = `Float32 GEMM ceiling (best at ${shape(CEILING_SHAPE)}): **${fmt(c.best)} GFLOP/s** (own ${fmt(c.own)}, oneDNN in the engine ${fmt(c.engineOnednn)}, OpenBLAS in the engine ${fmt(c.engineOpenblas)}, numpy ${fmt(c.numpy)}).`;
  const flopLines = Object.entries(r.flops).map(([m, f]) => `${m}: ${fmt(f.total / 1e6, 2)} MFLOP per training sample (forward ${fmt(f.forward / 1e6, 2)} + weight gradients ${fmt(f.dW / 1e6, 2)} + input gradients ${fmt(f.dX / 1e6, 2)})`);
  const counted = Object.values(r.flops)[0]?.counted ?? '';
  const best = (m: BenchModel, pick: (t: TrainRow) => boolean): TrainRow | null => {
    const xs = r.train.filter((t) => t.model === m && pick(t) && t.samplesPerSec != null);
    return xs.length ? xs.reduce((a, b) => (b.samplesPerSec! > a.samplesPerSec! ? b : a)) : null;
  };
  const isTorch = (t: TrainRow): boolean => t.engine === 'PyTorch';
  const isSlimfit = (t: TrainRow): boolean => t.engine === 'fast engine' || t.engine === 'fast engine, fused step';
  const isTorchBf16 = (t: TrainRow): boolean => t.engine === 'PyTorch, bf16 autocast';
  const isSlimfitBf16 = (t: TrainRow): boolean => t.engine === 'fast engine, fused step, bf16';
  // bf16 rows (opt-in, a different precision) are compared with PyTorch's bf16 autocast, and their share of the
  // float32 ceiling is marked as such
  const range = (v: number[]) => (v.length > 1 ? ` [${fmt(Math.min(...v), 0)}–${fmt(Math.max(...v), 0)}]` : '');
  const pct = (x: number | null): string => (x == null ? '–' : `${fmt(100 * x, 1)}%`); // one decimal: goals are thresholds such as 65%
  const train = markdownTable(['model', 'engine', 'threads', 'samples/s, median [range]', 'vs best PyTorch (same precision)', 'GFLOP/s', 'of float32 ceiling beside it', 'of start-of-run ceiling', 'samples per CPU-second', 'peak RSS', 'note'],
    r.train.map((t) => {
      const bf = isBf16Row(t);
      const p = best(t.model, bf ? isTorchBf16 : isTorch)?.samplesPerSec ?? null;
      const f = r.flops[t.model]?.total ?? 0;
      const gf = t.samplesPerSec != null && f ? (t.samplesPerSec * f) / 1e9 : null;
      const mark = bf ? ' (bf16, not float32)' : '';
      return [t.model, bf ? `${t.engine} (opt-in)` : t.engine, String(t.threads), `${fmt(t.samplesPerSec, 0)}${range(t.rounds)}`, t.samplesPerSec != null && p ? `${fmt(t.samplesPerSec / p, 2)}x` : '–',
        fmt(gf), t.ofCeiling == null ? '–' : `${pct(t.ofCeiling)}${mark}`, gf != null && c.best > 0 ? `${fmt((100 * gf) / c.best, 1)}%${mark}` : '–',
        fmt(t.samplesPerCpuSec, 0), t.peakRss ? formatBytes(t.peakRss) : '–', t.note];
    }));
  const bf16Table = r.bf16Gemm.length ? `\n\nOpt-in bf16 GEMM (operands rounded to bfloat16 while packing, float32 accumulation; a different precision from the float32 rows: 2·M·N·K counted alike; interleaved rounds, best of 3 each):\n\n${markdownTable(
    ['GEMM', 'M×N×K', 'bf16 AMX', 'bf16 AVX512_BF16', 'float32 own', 'float32 oneDNN in engine', 'float32 OpenBLAS in engine', 'best bf16 / best float32'],
    r.bf16Gemm.map((g) => [g.shape.name, shape(g.shape), fmt(g.amx), fmt(g.avx512bf16), fmt(g.own), fmt(g.onednn), fmt(g.openblas), `${fmt(g.ratio, 2)}x`]))}${r.bf16Note ? `\n\n${r.bf16Note}` : ''}` : r.bf16Note ? `\n\nbf16: ${r.bf16Note}.` : '';
  const bf16Lines = (Object.keys(r.flops) as BenchModel[]).flatMap((m) => {
    const s = best(m, isSlimfitBf16), p = best(m, isTorchBf16), s32 = best(m, isSlimfit);
    if (!s) return [];
    const f = r.flops[m]!.total;
    return [`${m}, opt-in bf16 matmul precision (NOT float32 results): best slimfit bf16 ${fmt(s.samplesPerSec, 0)} samples/s (${s.threads} thread${s.threads === 1 ? '' : 's'}) = ${fmt(s.samplesPerSec! * f / 1e9)} GFLOP/s = ${fmt((100 * s.samplesPerSec! * f) / 1e9 / c.best, 1)}% of the float32 ceiling; ` +
      `${s32 ? `${fmt(s.samplesPerSec! / s32.samplesPerSec!, 2)}x slimfit float32's best` : 'no float32 row'}; ${p ? `**${fmt(s.samplesPerSec! / p.samplesPerSec!, 2)}x** PyTorch bf16 autocast's best (${p.threads} thread${p.threads === 1 ? '' : 's'}: ${fmt(p.samplesPerSec, 0)})` : 'PyTorch bf16 autocast failed'}`];
  });
  const ratios = (Object.keys(r.flops) as BenchModel[]).map((m) => {
    const s = best(m, isSlimfit), p = best(m, isTorch);
    if (!s || !p) return `${m}: best slimfit / best PyTorch: – (a run failed)`;
    const f = r.flops[m]!.total;
    const beside = s.ofCeiling == null ? '' : `, ${pct(s.ofCeiling)} of the float32 ceiling measured beside it (median of the rounds' fractions${s.ceilingRounds.length > 1 ? `; the rounds' ceilings ${fmt(Math.min(...s.ceilingRounds), 0)}–${fmt(Math.max(...s.ceilingRounds), 0)} GFLOP/s` : ''}) and ${pct(s.ofBlasOwnCeiling)} of the better of the engine's OpenBLAS and own GEMM beside it`;
    return `${m}: best slimfit / best PyTorch = **${fmt(s.samplesPerSec! / p.samplesPerSec!, 2)}x** (${s.engine}, ${s.threads} thread${s.threads === 1 ? '' : 's'}: ${fmt(s.samplesPerSec, 0)} samples/s = ${fmt((100 * s.samplesPerSec! * f) / 1e9 / c.best, 1)}% of the start-of-run ceiling${beside}; PyTorch ${p.threads} thread${p.threads === 1 ? '' : 's'}: ${fmt(p.samplesPerSec, 0)})`;
  });
  // a PyTorch on Debian's netlib reference BLAS multiplies ~30x slower than OpenBLAS: say so next to every ratio
  const blasKinds = [...new Set(r.train.filter(isTorch).map((t) => t.blasKind ?? 'unknown'))];
  const peerNote = blasKinds.includes('reference')
    ? '**PyTorch ran on the reference (netlib) BLAS: NOT A FAIR PEER.** Point libblas.so.3 at OpenBLAS (`apt-get install libopenblas0-pthread`) and run again.'
    : `PyTorch's BLAS (mapped into its process): ${[...new Set(r.train.filter(isTorch).map((t) => t.blas ?? '?'))].join('; ')} (${blasKinds.join(', ')}); OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set to each row's threads.`;
  // the ceiling, the GEMMs and each training row run minutes apart: with other work on the cores their shares differ
  // the end load counts the bench's own threads (2 busy threads raise it to ~2 on a quiet machine), so only the start judges
  const busy = Number(r.load.split(' ')[0]) > availableParallelism() * 0.75
    ? `\n\n**The machine was busy (1-minute load average at the start above 3/4 of its ${availableParallelism()} cores): rates measured minutes apart are not comparable, and fractions of the ceiling can even pass 100%. Run again on a quiet machine.**` : '';
  return `Machine: ${r.cpu}. Load average (1/5/15 min) at start: ${r.load}, at end: ${r.loadEnd}. Engine: ${r.info}. Peer BLAS: ${r.numpyBlas}. GEMM: best of 3 timed rounds each (robust to other load).${busy}\n\n${gemm}\n\n${ceiling}${bf16Table}\n\nTraining (batch 128, Adam 1e-3, random data, one timed epoch after warm-up per run, each run in its own process; ${r.trainRounds} interleaved round${r.trainRounds === 1 ? '' : 's'} of every row, the median reported with the rounds' range; ratios and the start-of-run fractions use the medians; "beside it": every GEMM mode of the engine timed at 2048³ right before and right after each run, the better of the two per mode, and the median of the rounds' fractions; "start-of-run": the ceiling above, numpy included). ${peerNote}\n\n${train}\n\nFLOPs per training sample (${counted}):\n${flopLines.map((l) => `- ${l}`).join('\n')}\n\n${[...ratios, ...bf16Lines].map((l) => `- ${l}`).join('\n')}\n`;
}
