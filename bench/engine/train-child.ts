// Child process of `npm run bench -- engine`: trains one model on one engine and prints a JSON line
// {samplesPerSec, samplesPerCpuSec, peakRss, note}. Usage: node --import tsx bench-train-child.ts <mlp|cnn> <engine|fused|fused-bf16|wasm|cpu> <samples> <batch> [amx|avx512bf16]
// 'engine' trains by model.fit on the engine's kernels; 'fused' by the fused step slimfit's trainer uses (Dense step for
// the mlp, conv step for the cnn); 'fused-bf16' by the fused Dense step in the opt-in bf16 matmul precision (mlp only;
// the last argument picks its kernel, default the best).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { peakRssBytes } from '../../src/core/rss.ts';
import { buildBenchModel, sampleShape, type BenchModel } from './models.ts';
import { convTrainStep, denseTrainStep, installEngine, loadAddon } from '../../src/engine/index.ts';

const [kind, engine, samplesArg, batchArg, bf16KernelArg] = process.argv.slice(2) as [BenchModel, string, string, string, string | undefined];
const samples = Number(samplesArg), batch = Number(batchArg);
await tf.setBackend(engine === 'cpu' ? 'cpu' : 'wasm');
await tf.ready();
let note = `plain tfjs ${tf.getBackend()}`;
if (engine === 'engine' || engine === 'fused' || engine === 'fused-bf16') {
  const st = installEngine(tf, 'wasm');
  if (!st.active) throw new Error(`fast engine not active: ${st.note}`);
  note = st.note;
} else if (tf.getBackend() === 'wasm') {
  // the plain wasm backend has no Conv2DBackpropFilter: the same formulation src/train uses (conv2d on transposed tensors)
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter', backendName: 'wasm',
    kernelFunc: ({ inputs, attrs }) => {
      const { x, dy } = inputs as { x: tf.Tensor4D; dy: tf.Tensor4D };
      const a = attrs as unknown as { strides: [number, number]; pad: 'valid' | 'same'; filterShape: number[] };
      return tf.tidy(() => {
        const [fh, fw] = a.filterShape;
        const info = tf.backend_util.computeConv2DInfo(x.shape, a.filterShape as [number, number, number, number], a.strides, 1, a.pad);
        const xT = tf.transpose(x, [3, 1, 2, 0]), dyT = tf.transpose(dy, [1, 2, 0, 3]);
        const pads: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [info.padInfo.top, info.padInfo.bottom], [info.padInfo.left, info.padInfo.right], [0, 0]];
        const g = tf.conv2d(xT, dyT, 1, pads, 'NHWC', a.strides);
        const s = tf.slice(g, [0, 0, 0, 0], [g.shape[0], fh, fw, g.shape[3]]);
        return tf.keep(tf.transpose(s, [1, 2, 0, 3]));
      }) as unknown as tf.TensorInfo;
    },
  });
}
const model = buildBenchModel(tfl, kind);
model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
const x = tf.randomUniform([samples, ...sampleShape(kind)]);
const y = tf.oneHot(tf.randomUniform([samples], 0, 10, 'int32'), 10);
const warm = Math.min(samples, batch * 3);
const xWarm = tf.slice(x, 0, warm), yWarm = tf.slice(y, 0, warm);
let warmUp = async (): Promise<void> => { await model.fit(xWarm, yWarm, { batchSize: batch, epochs: 1, verbose: 0 }); };
await warmUp();
let train = async (): Promise<void> => { await model.fit(x, y, { batchSize: batch, epochs: 1, verbose: 0, shuffle: false }); };
if (engine === 'fused' || engine === 'fused-bf16') {
  const bf16 = engine === 'fused-bf16';
  if (bf16 && kind === 'cnn') throw new Error('the bf16 matmul precision has no conv step');
  if (bf16 && bf16KernelArg) loadAddon().addon!.setBf16Kernel(bf16KernelArg as 'amx' | 'avx512bf16');
  const r = kind === 'cnn' ? convTrainStep(tf, model, true) : denseTrainStep(tf, model, true, { matmulPrecision: bf16 ? 'bf16' : 'float32' });
  if (!r.step) throw new Error(`no fused step for ${kind}: ${r.reason}`);
  const xa = x.dataSync() as Float32Array, ya = Float32Array.from(y.dataSync());
  const per = xa.length / samples;
  const step = r.step;
  const run = (count: number): void => {
    for (let s = 0; s < count; s += batch) {
      const n = Math.min(batch, count - s);
      if (!step(xa.subarray(s * per, (s + n) * per), ya.subarray(s * 10, (s + n) * 10), n)) throw new Error('the fused step refused a batch');
    }
  };
  // warm-up of the path itself, as the fit rows' warm fit and the PyTorch peer's warm-up epoch: the step's first call
  // sizes its native scratch (page faults) and compiles its JS
  warmUp = async () => run(warm);
  await warmUp();
  train = async () => run(samples);
  note += kind === 'cnn' ? '; fused conv step' : '; fused Dense step';
  if (bf16) note += `, matmul precision bf16 on ${r.kernel === 'amx' ? 'AMX' : 'AVX512_BF16'}`;
}
// The setup's garbage (the random data's copies, the warm-up's tensors) is collected before the clock starts
// (bench.ts and bf16.ts run this file with --expose-gc; the PyTorch peer calls gc.collect() likewise): otherwise a
// major collection of it lands inside the short timed epoch (one of ~5 ms at its tenth step, measured). The collection
// walks the heap and leaves the caches cold and the pool's threads asleep for the step after it, so the warm-up runs
// once more after it (the PyTorch peer does the same).
(globalThis as { gc?: () => void }).gc?.();
await warmUp();
const t0 = performance.now();
const c0 = process.cpuUsage();
await train();
const sec = (performance.now() - t0) / 1000;
const cu = process.cpuUsage(c0);
const cpuSec = (cu.user + cu.system) / 1e6;
process.stdout.write(JSON.stringify({ samplesPerSec: samples / sec, samplesPerCpuSec: samples / cpuSec, peakRss: peakRssBytes(), note }) + '\n');
