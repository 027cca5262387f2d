// Guess (1): is lower precision faster on this machine? CPU features, GEMM throughput by dtype (engine, numpy, tfjs, an
// fp16-stored GEMM widened to fp32), bandwidth-bound GEMV by stored type, memory per parameter.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { tf } from './tf.ts';
import { signTestP } from './stats.ts';
import { medianOrNull } from '../dev/median.ts';
import { BF16, E4M3, FP16, FP32, encode, fixedFormat, int8Format, quantize, type Format } from '../src/precision/formats.ts';
import { createRng } from '../src/precision/rng.ts';
import { bars, figure } from './plot.ts';
import { SUB, table, writeSection } from './report.ts';
import { bytesPerParam, type OptimizerKind, type PrecisionSpec } from './train.ts';
import { logger, saveJson, stamp, type LabOptions } from './common.ts';

/**
 * One GEMM measurement: `gflops` and `ratio` are medians over interleaved rounds; `rounds` has every round's rate and
 * `ratioRounds` every round's ratio to the float32 row of the same implementation (measured in the same round).
 */
export interface GemmRow { source: string; dtype: string; shape: string; gflops: number | null; ratio: number | null; note: string; rounds?: number[]; ratioRounds?: number[] }

/** Timed rounds per measurement (interleaved across the kernels compared). */
export const SPEED_ROUNDS = { quick: 3, full: 8 } as const;

/** numpy matmul GFLOP/s by dtype at the given shapes (median of rounds, interleaved across dtypes), measured in a python3 child. */
export function numpyGemm(shapes: [number, number, number][], seconds: number, rounds: number = SPEED_ROUNDS.full): GemmRow[] {
  const code = `import json, sys, time
import numpy as np
shapes = json.loads(sys.argv[1]); secs = float(sys.argv[2]); rounds = int(sys.argv[3]); out = []
for M, N, K in shapes:
    ops = {}
    for dt in ['float64', 'float32', 'float16']:
        a = np.random.rand(M, K).astype(dt); b = np.random.rand(K, N).astype(dt)
        a @ b
        ops[dt] = (a, b)
    rates = {dt: [] for dt in ops}
    order = list(ops.items())
    for r in range(rounds):
        for dt, (a, b) in order[r % len(order):] + order[:r % len(order)]:
            # float16 has no BLAS kernel: one call may take longer than a round's share; it still counts once
            n = 0; t0 = time.perf_counter()
            while True:
                a @ b; n += 1
                dt_ = time.perf_counter() - t0
                if dt_ > secs / rounds: break
            rates[dt].append(2 * M * N * K * n / dt_ / 1e9)
    for dt in ops: out.append([M, N, K, dt, rates[dt]])
print(json.dumps({'numpy': np.__version__, 'rows': out}))`;
  const r = spawnSync('python3', ['-c', code, JSON.stringify(shapes), String(seconds), String(rounds)], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) return [{ source: 'numpy', dtype: '–', shape: '–', gflops: null, ratio: null, note: `python3/numpy not available: ${(r.stderr || r.error?.message || '').split('\n').slice(-2).join(' ')}` }];
  const res = JSON.parse(r.stdout) as { numpy: string; rows: [number, number, number, string, number[]][] };
  const rows: GemmRow[] = [];
  for (const [M, N, K, dt, g] of res.rows) {
    const f32 = res.rows.find((x) => x[0] === M && x[1] === N && x[2] === K && x[3] === 'float32')![4];
    const ratioRounds = g.map((v, i) => v / f32[i]);
    rows.push({ source: `numpy ${res.numpy} (${dt === 'float16' ? 'no BLAS for float16' : 'OpenBLAS'})`, dtype: dt, shape: `${M}×${N}×${K}`, gflops: medianOrNull(g), ratio: medianOrNull(ratioRounds), note: '', rounds: g, ratioRounds });
  }
  return rows;
}

/** TensorFlow.js matMul GFLOP/s (float32, the backend slimfit trains on) at the given shapes, median of rounds. */
export function tfjsGemm(shapes: [number, number, number][], seconds: number, rounds: number = SPEED_ROUNDS.full): GemmRow[] {
  return shapes.map(([M, N, K]) => {
    const a = tf.randomUniform([M, K]), b = tf.randomUniform([K, N]);
    tf.matMul(a, b).dispose();
    const g: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let n = 0, dt = 0;
      const t0 = performance.now();
      do { const c = tf.matMul(a, b); c.dataSync(); c.dispose(); n++; dt = (performance.now() - t0) / 1000; } while (dt < seconds / rounds);
      g.push((2 * M * N * K * n) / dt / 1e9);
    }
    tf.dispose([a, b]);
    return { source: `tfjs ${tf.getBackend()} backend`, dtype: 'float32', shape: `${M}×${N}×${K}`, gflops: medianOrNull(g), ratio: 1, note: 'float32 only', rounds: g, ratioRounds: g.map(() => 1) };
  });
}

/** The engine's `bench dtypes` rows (float64/float32/bfloat16/int8 and the bf16 training mode), or a note why they are missing. */
async function engineGemm(shapes: [number, number, number][], seconds: number, rounds: number): Promise<{ rows: GemmRow[]; note: string }> {
  try {
    const mod = await import('../bench/engine/dtypes.ts');
    const rows = mod.benchDtypes({ shapes, seconds, rounds }).map((r) => ({ source: `slimfit engine (${r.impl}, ${r.instruction})`, dtype: r.dtype, shape: `${r.M}×${r.N}×${r.K}`, gflops: medianOrNull(r.rounds), ratio: medianOrNull(r.ratioRounds), note: r.note, rounds: r.rounds, ratioRounds: r.ratioRounds }));
    return { rows, note: '' };
  } catch (e) {
    return { rows: [], note: `engine GEMM by dtype unavailable here (${(e as Error).message.split('\n')[0]}): engine rows pending` };
  }
}

/** A ratio with significant digits: 1.35x, 0.77x, 0.0036x (never "0.00x"). */
export function fmtRatio(r: number | null | undefined): string {
  if (r == null || !Number.isFinite(r)) return '–';
  return `${r >= 0.995 ? r.toFixed(2) : r.toPrecision(2)}x`;
}

/** The CPU features that decide which low-precision instructions exist, read at run time. */
export interface CpuFeature { name: string; flag: string; present: boolean; what: string }

const FEATURES: [string, string, string][] = [
  ['AVX2', 'avx2', '256-bit SIMD'],
  ['FMA', 'fma', 'fused multiply-add (vfmadd231ps)'],
  ['F16C', 'f16c', 'fp16 <-> fp32 conversion (vcvtph2ps)'],
  ['AVX-512F', 'avx512f', '512-bit SIMD'],
  ['AVX-512BW', 'avx512bw', '512-bit byte/word integer ops'],
  ['AVX-512 VNNI', 'avx512_vnni', 'int8 dot products (vpdpbusd)'],
  ['AVX-VNNI', 'avx_vnni', 'int8 dot products on 256-bit registers'],
  ['AVX-512 BF16', 'avx512_bf16', 'bf16 dot products (vdpbf16ps)'],
  ['AVX-512 FP16', 'avx512_fp16', 'fp16 arithmetic (vfmadd231ph)'],
  ['AMX-TILE', 'amx_tile', 'tile registers'],
  ['AMX-BF16', 'amx_bf16', 'bf16 tile matrix multiply (tdpbf16ps)'],
  ['AMX-INT8', 'amx_int8', 'int8 tile matrix multiply (tdpbssd)'],
];

/** CPU model and feature flags from /proc/cpuinfo (Linux); `source` says where they came from. */
export function cpuFeatures(): { model: string; source: string; features: CpuFeature[] } {
  let flags: Set<string> | null = null;
  let model = cpus()[0]?.model.trim() ?? 'unknown CPU';
  try {
    const txt = readFileSync('/proc/cpuinfo', 'utf8');
    const line = txt.split('\n').find((l) => /^flags\s*:/.test(l));
    if (line) flags = new Set(line.split(':')[1].trim().split(/\s+/));
    const m = txt.split('\n').find((l) => /^model name\s*:/.test(l));
    if (m) model = m.split(':')[1].trim();
  } catch { /* not Linux */ }
  if (!flags) return { model, source: 'unknown (no /proc/cpuinfo)', features: FEATURES.map(([name, flag, what]) => ({ name, flag, what, present: false })) };
  return { model, source: '/proc/cpuinfo', features: FEATURES.map(([name, flag, what]) => ({ name, flag, what, present: flags!.has(flag) })) };
}

/** The engine's low-precision storage kernels (native/lowp.cc), or null with the reason. */
type LowpFn = (kind: string, M: number, N: number, K: number, A: ArrayBufferView, B: ArrayBufferView, C: ArrayBufferView) => string | null;
async function lowpKernel(): Promise<{ lowp: LowpFn | null; note: string }> {
  try {
    const { loadAddon } = await import('../src/engine/addon.ts');
    const { addon, note } = loadAddon();
    const fn = (addon as unknown as { lowp?: LowpFn } | null)?.lowp;
    return fn ? { lowp: fn.bind(addon), note: '' } : { lowp: null, note: addon ? 'the engine addon predates native/lowp.cc (run `npm run build:native`)' : note };
  } catch (e) {
    return { lowp: null, note: (e as Error).message.split('\n')[0] };
  }
}

/** Every round's rate of each `run` over interleaved rounds (the order rotates by one each round): calls per second. */
function interleaved(runs: Map<string, () => void>, seconds: number, rounds: number): Map<string, number[]> {
  const all = new Map<string, number[]>();
  const list = [...runs];
  for (let r = 0; r < rounds; r++) {
    for (const [k, run] of [...list.slice(r % list.length), ...list.slice(0, r % list.length)]) {
      let reps = 0, dt = 0;
      const t0 = performance.now();
      do { run(); reps++; dt = (performance.now() - t0) / 1000; } while (dt < seconds / rounds);
      all.set(k, [...(all.get(k) ?? []), reps / dt]);
    }
  }
  return all;
}

/** Per-round ratios a[i] / b[i] (empty unless both have the same rounds). */
function perRound(a: number[] | undefined, b: number[] | undefined): number[] {
  return a && b && a.length === b.length ? a.map((v, i) => v / b[i]) : [];
}

/** fp16 codes of values (round to nearest even), via the lab's bit-exact encoder. */
function f16Codes(x: Float32Array): Uint16Array { return encode(FP16, x) as Uint16Array; }
function bf16Codes(x: Float32Array): Uint16Array { return encode(BF16, x) as Uint16Array; }

/** GEMM with B stored as fp16 and widened while packing, against the same kernel on fp32 B (1 thread). */
export async function upcastGemm(shapes: [number, number, number][], seconds: number, rounds: number = SPEED_ROUNDS.full): Promise<{ rows: GemmRow[]; note: string }> {
  const { lowp, note } = await lowpKernel();
  if (!lowp) return { rows: [], note };
  const rows: GemmRow[] = [];
  for (const [M, N, K] of shapes) {
    const A = new Float32Array(M * K).map((_, i) => ((i * 37) % 100) / 100);
    const B32 = new Float32Array(K * N).map((_, i) => ((i * 53) % 100) / 100);
    const B16 = f16Codes(B32);
    const C = new Float32Array(M * N);
    const A16 = f16Codes(A);
    const ins = { f32: lowp('gemm_f32', M, N, K, A, B32, C), f16: lowp('gemm_f16', M, N, K, A, B16, C), fma16: lowp('gemm_f16fma', M, N, K, A16, B16, C) };
    const runs = new Map<string, () => void>();
    if (ins.f32) runs.set('f32', () => { lowp('gemm_f32', M, N, K, A, B32, C); });
    if (ins.f16) runs.set('f16', () => { lowp('gemm_f16', M, N, K, A, B16, C); });
    if (ins.fma16) runs.set('fma16', () => { lowp('gemm_f16fma', M, N, K, A16, B16, C); });
    const rate = interleaved(runs, seconds, rounds);
    const g = (k: string) => (rate.get(k) ?? []).map((v) => (2 * M * N * K * v) / 1e9);
    for (const [k, dtype, needs] of [['f32', 'float32', 'AVX-512F'], ['f16', 'float16 storage, fp32 math', 'AVX-512F and F16C'], ['fma16', 'float16 math (fp16 sums)', 'AVX512_FP16']] as const) {
      const v = g(k), ratioRounds = perRound(v, g('f32'));
      rows.push({ source: `slimfit lab kernel, 1 thread (${ins[k] ?? `needs ${needs}`})`, dtype, shape: `${M}×${N}×${K}`, gflops: medianOrNull(v), ratio: medianOrNull(ratioRounds), note: v.length ? '' : `not on this CPU (needs ${needs})`, rounds: v, ratioRounds });
    }
  }
  return { rows, note: '' };
}

/** One bandwidth-bound GEMV measurement (y = W x, M = 1): medians over interleaved rounds, with every round's speed ratio. */
export interface GemvRow { size: string; dtype: string; weightBytes: number; instruction: string; gflops: number | null; gbps: number | null; ratio: number | null; note: string; ratioRounds?: number[] }

/** y = W x with W (N×K) stored as fp32, bf16, fp16 or int8, streamed from memory once per call (1 thread). */
export async function gemvRows(sizes: [number, number][], seconds: number, rounds: number = SPEED_ROUNDS.full): Promise<{ rows: GemvRow[]; note: string }> {
  const { lowp, note } = await lowpKernel();
  if (!lowp) return { rows: [], note };
  const rows: GemvRow[] = [];
  for (const [N, K] of sizes) {
    const W = new Float32Array(N * K);
    for (let i = 0; i < W.length; i++) W[i] = (((i * 2654435761) >>> 0) % 2001 - 1000) / 1000;
    const x = new Float32Array(K).map((_, i) => ((i * 37) % 100) / 100);
    const Wb = bf16Codes(W), Wh = f16Codes(W);
    const Wi = new Int8Array(N * K);
    for (let i = 0; i < Wi.length; i++) Wi[i] = Math.round(W[i] * 127);
    const xu = new Uint8Array(K).map((_, i) => (i * 37) % 256);
    const y = new Float32Array(N), yi = new Int32Array(N);
    const kinds: [string, string, ArrayBufferView, ArrayBufferView, ArrayBufferView, number][] = [
      ['gemv_f32', 'float32', W, x, y, 4], ['gemv_bf16', 'bfloat16 storage, fp32 math', Wb, x, y, 2], ['gemv_f16', 'float16 storage, fp32 math', Wh, x, y, 2], ['gemv_i8', 'int8 weights × uint8 activations', Wi, xu, yi, 1],
    ];
    const runs = new Map<string, () => void>();
    const ins = new Map<string, string | null>();
    for (const [k, , a, b, c] of kinds) { ins.set(k, lowp(k, 1, N, K, a, b, c)); if (ins.get(k)) runs.set(k, () => { lowp(k, 1, N, K, a, b, c); }); }
    const rate = interleaved(runs, seconds, rounds);
    for (const [k, dtype, , , , bytes] of kinds) {
      const r = medianOrNull(rate.get(k) ?? []), ratioRounds = perRound(rate.get(k), rate.get('gemv_f32'));
      rows.push({ size: `${N}×${K}`, dtype, weightBytes: N * K * bytes, instruction: ins.get(k) ?? '–', gflops: r ? (2 * N * K * r) / 1e9 : null, gbps: r ? (N * K * bytes * r) / 1e9 : null, ratio: medianOrNull(ratioRounds), note: r ? '' : k === 'gemv_i8' ? 'not on this CPU (needs AVX512_VNNI)' : 'not on this CPU (needs AVX2, FMA and F16C)', ratioRounds });
    }
  }
  return { rows, note: '' };
}

/** L3 (last-level) cache size in bytes from sysfs, or null. */
function llcBytes(): number | null {
  try {
    let best = 0;
    for (const d of readdirSync('/sys/devices/system/cpu/cpu0/cache').filter((x) => x.startsWith('index'))) {
      const s = readFileSync(`/sys/devices/system/cpu/cpu0/cache/${d}/size`, 'utf8').trim();
      const m = /^(\d+)([KMG])?$/.exec(s);
      if (m) best = Math.max(best, Number(m[1]) * (m[2] === 'K' ? 1024 : m[2] === 'M' ? 2 ** 20 : m[2] === 'G' ? 2 ** 30 : 1));
    }
    return best || null;
  } catch { return null; }
}

/** Elements per second our JS quantizers process (the cost of emulating a format on float32 hardware). */
function quantizeRates(quick: boolean): (string | number)[][] {
  const rng = createRng(1);
  const x = new Float32Array(quick ? 1 << 20 : 1 << 22).map(() => rng.normal());
  const out = new Float32Array(x.length);
  const rows: (string | number)[][] = [];
  for (const f of [BF16, FP16, E4M3, fixedFormat(4, 12), int8Format()] as Format[]) {
    const r: string[] = [f.name];
    for (const mode of ['nearest', 'stochastic'] as const) {
      quantize(f, x, { rounding: mode, rng, out });
      const t0 = performance.now();
      const reps = 3;
      for (let i = 0; i < reps; i++) quantize(f, x, { rounding: mode, rng, out });
      r.push(((reps * x.length) / ((performance.now() - t0) / 1000) / 1e6).toFixed(0));
    }
    rows.push(r);
  }
  return rows;
}

/** Run the speed experiment and write its section. */
export async function labSpeed(o: LabOptions): Promise<SpeedData> {
  const log = logger(o);
  const t0 = performance.now();
  const shapes: [number, number, number][] = o.quick ? [[128, 512, 784]] : [[100, 1000, 784], [128, 512, 784], [1024, 1024, 1024]];
  const secs = o.quick ? 0.3 : 1.0;
  const rounds = o.quick ? SPEED_ROUNDS.quick : SPEED_ROUNDS.full;
  // numpy first: the engine's worker threads may still be spinning right after a GEMM and would steal its cores
  log('speed: numpy GEMM by dtype (same run)...');
  const np = numpyGemm(shapes, secs, rounds);
  log('speed: engine GEMM by dtype...');
  const eng = await engineGemm(shapes, secs, rounds);
  log('speed: tfjs matMul...');
  const tj = tfjsGemm(shapes, secs, rounds);
  log('speed: fp16-stored GEMM widened to fp32 (same kernel as its fp32 row)...');
  const up = await upcastGemm(shapes, secs, rounds);
  const gemm = [...eng.rows, ...up.rows, ...np, ...tj];
  const cpu = cpuFeatures();
  const gemvSizes: [number, number][] = o.quick ? [[4096, 4096]] : [[4096, 4096], [8192, 16384]];
  log(`speed: GEMV ${gemvSizes.map((x) => x.join('×')).join(', ')} by stored type...`);
  const gv = await gemvRows(gemvSizes, secs, rounds);
  const llc = llcBytes();
  const fmtG = (g: number | null) => (g == null ? '–' : g >= 100 ? g.toFixed(0) : g.toPrecision(3));
  const span = (xs: number[] | undefined, f: (v: number) => string): string => (xs && xs.length > 1 ? ` [${f(Math.min(...xs))}–${f(Math.max(...xs))}]` : '');
  const gemmRows = gemm.map((r) => [r.shape, r.source, r.dtype, r.gflops == null ? r.note : `${fmtG(r.gflops)}${span(r.rounds, fmtG)}`, r.ratio == null ? '–' : `${fmtRatio(r.ratio)}${span(r.ratioRounds, (v) => fmtRatio(v))}`]);
  const first = shapes[0].join('×');
  const figGemm = await figure(bars(gemm.filter((r) => r.shape === first && r.gflops != null).map((r) => ({ cat: r.dtype, y: r.gflops!, series: r.source.replace(/ \(.*$/, '') })), { title: `GEMM throughput by dtype, shape ${first} (M×N×K)`, y: 'GFLOP/s (GOP/s int8), log scale', cat: 'dtype', logY: true }), o.out, SUB, 'speed-gemm', 'GEMM by dtype');
  // memory per parameter
  const recipes: [string, Pick<PrecisionSpec, 'weights' | 'master' | 'kahan' | 'state'>, OptimizerKind][] = [
    ['fp32, SGD', { weights: FP32 }, 'sgd'],
    ['fp32, momentum', { weights: FP32 }, 'momentum'],
    ['fp32, Adam', { weights: FP32 }, 'adam'],
    ['fp16 weights + fp32 master, Adam fp32 (classic mixed precision)', { weights: FP16, master: true }, 'adam'],
    ['bf16 weights, Adam in bf16 (pure bf16)', { weights: BF16, state: BF16 }, 'adam'],
    ['bf16 weights + Kahan, Adam in bf16', { weights: BF16, kahan: true, state: BF16 }, 'adam'],
    ['bf16 weights (stochastic rounding), momentum fp32', { weights: BF16 }, 'momentum'],
    ['FP8 E4M3 weights + fp32 master, Adam fp32', { weights: E4M3, master: true }, 'adam'],
    ['fixed<4,12> weights (stochastic rounding), SGD (Gupta 2015)', { weights: fixedFormat(4, 12) }, 'sgd'],
    ['int8 weights (inference only)', { weights: int8Format() }, 'sgd'],
  ];
  const P = 784 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 * 10 + 10;
  const memRows = recipes.map(([name, prec, opt]) => {
    const b = bytesPerParam(prec, opt);
    return [name, b.weights, b.master, b.kahan, b.state, b.total, `${((b.total * P) / 2 ** 20).toFixed(1)} MiB`];
  });
  // float64 is not a lab format (values are emulated in float32); its cost is plain arithmetic: 8 B weights + 2 x 8 B Adam moments
  memRows.unshift(['fp64 weights, Adam fp64 (what "64-bit" would cost)', 8, 0, 0, 16, 24, `${((24 * P) / 2 ** 20).toFixed(1)} MiB`]);
  log('speed: quantizer throughput...');
  const qRows = quantizeRates(o.quick);
  const seconds = (performance.now() - t0) / 1000;
  const md = [
    '## speed — guess (1): is lower precision faster here?',
    '',
    stamp(o.quick, seconds, `GEMM shapes ${shapes.map((s) => s.join('×')).join(', ')} (M×N×K), ${secs} s per measurement split into ${rounds} rounds interleaved across the kernels compared (their order rotating by one each round); each number is the median of the rounds with [min–max] after it, and each ratio the median [min–max] of per-round ratios (both rates from the same round); all rows measured in this same run`),
    '',
    `### CPU features (read at run time from ${cpu.source})`,
    '',
    `${cpu.model}, ${cpus().length} logical cores, load average ${loadavg().map((v) => v.toFixed(1)).join(' / ')} when the section was written. A low-precision type is fast only where an instruction for it exists and a kernel uses it.`,
    '',
    table(['feature', 'present', 'what it provides'], cpu.features.map((f) => [f.name, f.present ? 'yes' : 'no', f.what])),
    '',
    '### GEMM by dtype',
    '',
    eng.note ? `Note: ${eng.note}.` : 'Engine rows: the fast engine\'s hand-written kernels (`npm run bench -- dtypes`), one per dtype, OpenBLAS through the engine, and the "bf16 mode" rows: the GEMM of the opt-in bf16 training mode (`--matmul-precision bf16`), float32 operands rounded to bf16 while packed and float32 sums, on AMX tiles or AVX512_BF16, against the engine\'s default float32 GEMM. "slimfit lab kernel" rows: one kernel (native/lowp.cc, one thread, 4×32 register tile) on B stored as float32, and on B stored as float16 codes converted to float32 while B is packed (F16C/AVX-512 `vcvtph2ps`), all multiply-adds in float32 — the storage-only use of fp16 that needs no fp16 arithmetic; and the same tile in fp16 arithmetic (AVX512_FP16 `vfmadd231ph`, 32 lanes per register instead of 16) where the CPU has it — fast, but its sums are rounded to fp16 (11 significant bits) at every step, so it is a speed limit, not a training recipe.' + (up.note ? ` (fp16-storage rows missing: ${up.note}.)` : ''),
    '',
    table(['shape M×N×K', 'implementation (instruction)', 'dtype', 'GFLOP/s (GOP/s int8), median [min–max]', 'ratio to float32 (same implementation; bf16 mode: the engine\'s default), median [min–max]'], gemmRows),
    '',
    figGemm,
    '',
    '### GEMV: one input vector, weights streamed from memory (bandwidth-bound)',
    '',
    `y = W·x with W of N×K stored in the given type, x and y float32 (int8: x quantized to uint8, y int32), one thread, every call reads all of W once; GB/s counts the weight bytes read per second. With M = 1 each weight is used once, so the time is set by how fast W arrives from memory, not by arithmetic — the regime of LLM token-by-token inference — and a type half as wide should take about half the time.${llc ? ` Last-level cache: ${(llc / 2 ** 20).toFixed(0)} MiB (a VM may report the host's whole L3 shared with other tenants); matrices smaller than that may be served partly from cache.` : ''}` + (gv.note ? ` (GEMV rows missing: ${gv.note}.)` : ''),
    '',
    table(['N×K', 'weights stored as', 'W size', 'instruction', 'GFLOP/s (GOP/s int8)', 'weight GB/s', 'speed vs float32, median [min–max]'], gv.rows.map((r) => [r.size, r.dtype, `${(r.weightBytes / 2 ** 20).toFixed(0)} MiB`, r.instruction, r.gflops == null ? r.note : r.gflops.toPrecision(3), r.gbps == null ? '–' : r.gbps.toPrecision(3), r.ratio == null ? '–' : `${fmtRatio(r.ratio)}${span(r.ratioRounds, (v) => fmtRatio(v))}`])),
    '',
    '### Memory per parameter (bytes)',
    '',
    `Weights + fp32 master copy + Kahan compensation + optimizer state, per trainable parameter; last column for the 784-1000-1000-10 network of gupta2015 (${P.toLocaleString('en')} parameters). Gradients and activations are transient and not counted.`,
    '',
    table(['recipe', 'weights', 'master', 'Kahan', 'optimizer state', 'total', '784-1000-1000-10'], memRows),
    '',
    '### Cost of emulating a format in software',
    '',
    'The lab stores values in float32 and rounds them with bit manipulation; millions of elements per second (single thread):',
    '',
    table(['format', 'round-to-nearest M/s', 'stochastic M/s'], qRows),
  ].join('\n');
  const data: SpeedData = { quick: o.quick, rounds, gemm, memory: memRows, engineNote: eng.note, cpu, gemv: gv.rows, llcBytes: llc, load: loadavg() };
  await saveJson(o.out, 'speed', data);
  await writeSection(o.out, 'speed', md);
  return data;
}

/** Everything the speed section saves (precision/speed.json). */
export interface SpeedData {
  quick: boolean;
  /** Interleaved rounds per measurement (absent in results written before rounds were kept). */
  rounds?: number;
  gemm: GemmRow[];
  memory: (string | number)[][];
  engineNote: string;
  cpu: ReturnType<typeof cpuFeatures>;
  gemv: GemvRow[];
  llcBytes: number | null;
  load: number[];
}

/**
 * Markdown bullets for the report's answer to guess 1, from the saved speed.json: the CPU's low-precision features,
 * the fp16-storage GEMM against fp32 in the same kernel, the GEMV rows by stored type (all ratios from one run on a
 * shared machine; the load average is quoted).
 * @example speedAnswerBullets(JSON.parse(readFileSync('reports/precision/speed.json', 'utf8')))
 */
export function speedAnswerBullets(data: SpeedData): string[] {
  const out: string[] = [];
  const load = data.load ? ` (load average ${data.load[0].toFixed(1)} on a shared machine: compare ratios within this run, not absolute rates)` : '';
  if (data.cpu) {
    const has = data.cpu.features.filter((f) => f.present).map((f) => f.name), not = data.cpu.features.filter((f) => !f.present).map((f) => f.name);
    out.push(`CPU: ${data.cpu.model}; has ${has.join(', ') || 'none of the listed features'}${not.length ? `; lacks ${not.join(', ')}` : ''} (from ${data.cpu.source}).`);
  }
  const byShape = new Map<string, GemmRow[]>();
  for (const r of data.gemm ?? []) if (/lab kernel/.test(r.source)) byShape.set(r.shape, [...(byShape.get(r.shape) ?? []), r]);
  const up = [...byShape].map(([sh, rs]) => {
    const f = rs.find((r) => r.dtype === 'float32'), h = rs.find((r) => r.dtype.startsWith('float16 storage')), a = rs.find((r) => r.dtype.startsWith('float16 math'));
    return f?.gflops && h?.gflops ? `${sh}: ${h.gflops.toPrecision(3)} vs ${f.gflops.toPrecision(3)} GFLOP/s (${fmtRatio(h.gflops / f.gflops)})${a?.gflops ? `; in fp16 arithmetic (AVX512_FP16, fp16 sums) ${a.gflops.toPrecision(3)} GFLOP/s (${fmtRatio(a.gflops / f.gflops)})` : a ? `; fp16 arithmetic: ${a.note}` : ''}` : null;
  }).filter(Boolean);
  if (up.length) out.push(`GEMM with B stored as fp16 and widened to fp32 while packing, against the same kernel on fp32 B (compute-bound, one thread): ${up.join('; ')} — storage in fp16 costs little in a GEMM because each B value is converted once and reused M times.`);
  const bfm = (data.gemm ?? []).filter((r) => /bf16 mode/.test(r.source));
  if (bfm.some((r) => r.gflops != null)) out.push(`GEMM of the opt-in bf16 training mode (float32 operands rounded to bf16 while packing, float32 sums) against the engine's default float32 GEMM, both on all cores: ${bfm.map((r) => `${r.shape} ${/tdpbf16ps/.test(r.source) ? 'AMX' : 'AVX512_BF16'} ${r.gflops == null ? r.note : `${r.gflops >= 100 ? r.gflops.toFixed(0) : r.gflops.toPrecision(3)} GFLOP/s (${fmtRatio(r.ratio)})`}`).join('; ')}.`);
  const np16 = (data.gemm ?? []).filter((r) => /numpy/.test(r.source) && r.dtype === 'float16' && r.ratio != null);
  if (np16.length) out.push(`numpy's float16 matmul (no BLAS kernel; emulated) runs at ${np16.map((r) => `${fmtRatio(r.ratio)} of its float32 at ${r.shape}`).join(', ')}: a fact about numpy, not about the CPU.`);
  const sizes = [...new Set((data.gemv ?? []).map((r) => r.size))];
  for (const sz of sizes) {
    const rs = data.gemv.filter((r) => r.size === sz && r.gbps != null);
    const f32 = rs.find((r) => r.dtype === 'float32');
    if (!f32) continue;
    const miss = data.gemv.filter((r) => r.size === sz && r.gbps == null).map((r) => `${r.dtype}: ${r.note}`);
    out.push(`GEMV ${sz} (M = 1, bandwidth-bound, one thread): ${rs.map((r) => `${r.dtype.replace(/ storage, fp32 math| weights × uint8 activations/, '')} ${(r.weightBytes / 2 ** 20).toFixed(0)} MiB in ${(1e3 * r.weightBytes / (r.gbps! * 1e9)).toPrecision(3)} ms (${r.gbps!.toPrecision(3)} GB/s, ${fmtRatio(r.ratio)} the speed of float32)`).join('; ')}${miss.length ? `; ${miss.join('; ')}` : ''}.`);
  }
  return out.map((l) => `- ${l}${l === out[out.length - 1] ? load : ''}`);
}

/** One speed comparison: per shape, every per-round ratio (or the median alone when rounds were not kept). */
interface Comparison { label: string; shapes: { shape: string; ratios: number[] }[]; rounds: boolean }

type Verdict = 'faster' | 'slower' | 'mixed';

function compare(label: string, rows: { shape: string; ratio: number | null; ratioRounds?: number[] }[], invert = false): Comparison | null {
  const have = rows.filter((r) => r.ratio != null);
  if (!have.length) return null;
  const rounds = have.every((r) => (r.ratioRounds?.length ?? 0) > 1);
  const inv = (v: number) => (invert ? 1 / v : v);
  return { label, rounds, shapes: have.map((r) => ({ shape: r.shape, ratios: (rounds ? r.ratioRounds! : [r.ratio!]).map(inv) })) };
}

/** "2.13–2.33×", with three significant digits (a ratio of 1.06 stays distinguishable from 1). */
function rangeOf(v: number[]): string {
  const lo = Math.min(...v).toPrecision(3), hi = Math.max(...v).toPrecision(3);
  return `${lo === hi ? lo : `${lo}–${hi}`}×`;
}

function verdictOf(ratios: number[]): Verdict {
  return Math.min(...ratios) > 1 ? 'faster' : Math.max(...ratios) < 1 ? 'slower' : 'mixed';
}

/**
 * The headline answer to guess 1 from speed.json: each low-precision path against float32 (float32 against float64)
 * as the range of its per-round ratios, called faster or slower only where every round at every shape agrees; a path
 * whose verdict changes with the shape is listed shape by shape.
 * @example speedHeadline(JSON.parse(readFileSync('reports/precision/speed.json', 'utf8')))
 */
export function speedHeadline(data: SpeedData): string {
  const g = data.gemm ?? [];
  const pick = (f: (r: GemmRow) => boolean) => g.filter(f);
  const gemv = (t: string) => (data.gemv ?? []).filter((r) => r.dtype.startsWith(t)).map((r) => ({ ...r, shape: r.size }));
  const cs = [
    compare('float32 GEMM vs float64 (engine, own kernels)', pick((r) => /engine \(own/.test(r.source) && r.dtype === 'float64'), true),
    compare('bf16 GEMM on AMX tiles (the opt-in bf16 training mode) vs the engine\'s float32', pick((r) => /bf16 mode, tdpbf16ps/.test(r.source))),
    compare('int8 GEMM on VNNI vs float32 (GOP/s against GFLOP/s, the kernel alone: no quantization of activations, no dequantization)', pick((r) => /engine \(own/.test(r.source) && r.dtype === 'int8')),
    compare('GEMV (one input vector) with weights stored in bf16, converted to fp32 for the arithmetic', gemv('bfloat16')),
    compare('GEMV with weights stored in fp16, converted likewise', gemv('float16')),
    compare('GEMV with int8 weights (VNNI, kernel only)', gemv('int8')),
    compare('GEMM with fp16-stored weights widened to fp32', pick((r) => /lab kernel/.test(r.source) && r.dtype.startsWith('float16 storage'))),
    compare('bf16 GEMM on AVX512_BF16 dot products (engine) vs float32', pick((r) => /engine \(own, vdpbf16ps/.test(r.source))),
    compare('bf16 training GEMM on AVX512_BF16 vs the engine\'s float32', pick((r) => /bf16 mode, vdpbf16ps/.test(r.source))),
    compare('GEMM in fp16 arithmetic (AVX512_FP16)', pick((r) => /lab kernel/.test(r.source) && r.dtype.startsWith('float16 math'))),
  ].filter((c): c is Comparison => c !== null);
  if (!cs.length) return 'speed.json has no comparable rows';
  const all = (c: Comparison) => c.shapes.flatMap((x) => x.ratios);
  const say = (xs: Comparison[]) => xs.map((c) => `${c.label} ${rangeOf(all(c))}`).join('; ');
  if (cs.some((c) => !c.rounds)) return `${say(cs)} (one measured run per shape: no spread, so no verdict; re-run \`npm run lab -- speed\`)`;
  const n = data.rounds ?? 0;
  if (signTestP(n) >= 0.05) return `${say(cs)} (ranges of per-round ratios over ${n} rounds: too few for even unanimous rounds to be significant, so no verdict; full mode runs 8)`;
  const groups: Record<Verdict | 'shape', Comparison[]> = { faster: [], slower: [], mixed: [], shape: [] };
  for (const c of cs) {
    const vs = new Set(c.shapes.map((x) => verdictOf(x.ratios)));
    groups[vs.size === 1 ? [...vs][0] : 'shape'].push(c);
  }
  const parts: string[] = [];
  if (groups.faster.length) parts.push(`**faster in every one of ${n} interleaved rounds at every shape**: ${say(groups.faster)}`);
  if (groups.slower.length) parts.push(`**slower in every round at every shape**: ${say(groups.slower)}`);
  if (groups.shape.length) parts.push(`**depends on the shape**: ${groups.shape.map((c) => `${c.label}: ${c.shapes.map((x) => { const v = verdictOf(x.ratios); return `${v === 'mixed' ? 'no consistent difference' : v} at ${x.shape} (${rangeOf(x.ratios)})`; }).join(', ')}`).join('; ')}`);
  if (groups.mixed.length) parts.push(`**no consistent difference** (rounds disagree): ${say(groups.mixed)}`);
  const f = groups.faster.length, sl = groups.slower.length + groups.shape.length + groups.mixed.length;
  const lead = f && sl ? 'on this CPU with these kernels, some lower-precision paths were faster than the wider type and some were not' : f ? 'on this CPU with these kernels, every lower-precision path measured was faster' : 'on this CPU with these kernels, no lower-precision path was consistently faster';
  return `${lead} — ${parts.join('. ')} (ranges of per-round ratios; a verdict needs all ${n} rounds at a shape to agree, which a sign test puts at p = ${signTestP(n).toPrecision(2)} per shape; ${modeOfSpeed(data)} mode)`;
}

function modeOfSpeed(d: SpeedData): string { return d.quick ? 'quick' : 'full'; }
