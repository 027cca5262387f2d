// Guess (1): is lower precision faster on this machine? GEMM throughput by dtype (engine, numpy, tfjs), memory per parameter.
import { spawnSync } from 'node:child_process';
import { tf } from './tf.ts';
import { BF16, E4M3, FP16, FP32, fixedFormat, int8Format, quantize, type Format } from '../src/precision/formats.ts';
import { createRng } from '../src/precision/rng.ts';
import { bars, figure } from './plot.ts';
import { SUB, table, writeSection } from './report.ts';
import { bytesPerParam, type OptimizerKind, type PrecisionSpec } from './train.ts';
import { logger, saveJson, stamp, type LabOptions } from './common.ts';

/** One GEMM measurement. */
export interface GemmRow { source: string; dtype: string; shape: string; gflops: number | null; ratio: number | null; note: string }

/** numpy matmul GFLOP/s by dtype at the given shapes (median of rounds), measured in a python3 child. */
export function numpyGemm(shapes: [number, number, number][], seconds: number): GemmRow[] {
  const code = `import json, sys, time
import numpy as np
shapes = json.loads(sys.argv[1]); secs = float(sys.argv[2]); out = []
for M, N, K in shapes:
    for dt in ['float64', 'float32', 'float16']:
        a = np.random.rand(M, K).astype(dt); b = np.random.rand(K, N).astype(dt)
        a @ b
        rates = []
        for r in range(3):
            n = 0; t0 = time.perf_counter()
            while True:
                a @ b; n += 1
                dt_ = time.perf_counter() - t0
                if dt_ > secs / 3: break
            rates.append(2 * M * N * K * n / dt_ / 1e9)
        out.append([M, N, K, dt, sorted(rates)[1]])
print(json.dumps({'numpy': np.__version__, 'rows': out}))`;
  const r = spawnSync('python3', ['-c', code, JSON.stringify(shapes), String(seconds)], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) return [{ source: 'numpy', dtype: '–', shape: '–', gflops: null, ratio: null, note: `python3/numpy not available: ${(r.stderr || r.error?.message || '').split('\n').slice(-2).join(' ')}` }];
  const res = JSON.parse(r.stdout) as { numpy: string; rows: [number, number, number, string, number][] };
  const rows: GemmRow[] = [];
  for (const [M, N, K, dt, g] of res.rows) {
    const f32 = res.rows.find((x) => x[0] === M && x[1] === N && x[2] === K && x[3] === 'float32')![4];
    rows.push({ source: `numpy ${res.numpy} (${dt === 'float16' ? 'no BLAS for float16' : 'OpenBLAS'})`, dtype: dt, shape: `${M}×${N}×${K}`, gflops: g, ratio: g / f32, note: '' });
  }
  return rows;
}

/** TensorFlow.js matMul GFLOP/s (float32, the backend slimfit trains on) at the given shapes. */
export function tfjsGemm(shapes: [number, number, number][], seconds: number): GemmRow[] {
  return shapes.map(([M, N, K]) => {
    const a = tf.randomUniform([M, K]), b = tf.randomUniform([K, N]);
    tf.matMul(a, b).dispose();
    let n = 0;
    const t0 = performance.now();
    let dt = 0;
    do { const c = tf.matMul(a, b); c.dataSync(); c.dispose(); n++; dt = (performance.now() - t0) / 1000; } while (dt < seconds);
    tf.dispose([a, b]);
    return { source: `tfjs ${tf.getBackend()} backend`, dtype: 'float32', shape: `${M}×${N}×${K}`, gflops: (2 * M * N * K * n) / dt / 1e9, ratio: 1, note: 'float32 only' };
  });
}

/** The engine's `bench dtypes` rows (float64/float32/bfloat16/int8), or a note why they are missing. */
async function engineGemm(shapes: [number, number, number][], seconds: number): Promise<{ rows: GemmRow[]; note: string }> {
  try {
    const mod = await import('../bench/engine/dtypes.ts');
    const rows = mod.benchDtypes({ shapes, seconds }).map((r) => ({ source: `slimfit engine (${r.impl}, ${r.instruction})`, dtype: r.dtype, shape: `${r.M}×${r.N}×${r.K}`, gflops: r.rate, ratio: r.ratioToFloat32, note: r.note }));
    return { rows, note: '' };
  } catch (e) {
    return { rows: [], note: `engine GEMM by dtype unavailable here (${(e as Error).message.split('\n')[0]}): engine rows pending` };
  }
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
export async function labSpeed(o: LabOptions): Promise<{ gemm: GemmRow[] }> {
  const log = logger(o);
  const t0 = performance.now();
  const shapes: [number, number, number][] = o.quick ? [[128, 512, 784]] : [[100, 1000, 784], [128, 512, 784], [1024, 1024, 1024]];
  const secs = o.quick ? 0.3 : 1.0;
  // numpy first: the engine's worker threads may still be spinning right after a GEMM and would steal its cores
  log('speed: numpy GEMM by dtype (same run)...');
  const np = numpyGemm(shapes, secs);
  log('speed: engine GEMM by dtype...');
  const eng = await engineGemm(shapes, secs);
  log('speed: tfjs matMul...');
  const tj = tfjsGemm(shapes, secs);
  const gemm = [...eng.rows, ...np, ...tj];
  const fmtG = (g: number | null) => (g == null ? '–' : g >= 100 ? g.toFixed(0) : g.toPrecision(3));
  const gemmRows = gemm.map((r) => [r.shape, r.source, r.dtype, r.gflops == null ? r.note : fmtG(r.gflops), r.ratio == null ? '–' : `${r.ratio.toFixed(2)}x`]);
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
    stamp(o.quick, seconds, `GEMM shapes ${shapes.map((s) => s.join('×')).join(', ')} (M×N×K), ${secs} s per measurement, median of 3 rounds; all rows measured in this same run`),
    '',
    eng.note ? `Note: ${eng.note}.` : 'Engine rows: the fast engine\'s hand-written kernels (`npm run bench -- dtypes`), one per dtype, and OpenBLAS through the engine.',
    '',
    table(['shape M×N×K', 'implementation', 'dtype', 'GFLOP/s (GOP/s int8)', 'ratio to float32 (same implementation)'], gemmRows),
    '',
    figGemm,
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
  await saveJson(o.out, 'speed', { quick: o.quick, gemm, memory: memRows, engineNote: eng.note });
  await writeSection(o.out, 'speed', md);
  return { gemm };
}
