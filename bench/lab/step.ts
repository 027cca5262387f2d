// Per-step time of the precision lab's trainer on the gupta2015 network (784-1000-1000-10, batch 100, 16-bit fixed
// point weights, gradients and layer outputs), with the native rounding kernels (native/quant.cc) and with the
// JavaScript loops, alternating in one process; both must give the same losses and weights.
import { cpus, loadavg } from 'node:os';
import { createHash } from 'node:crypto';
import { fixedFormat, type Rounding } from '../../src/precision/formats.ts';
import { nativeQuant, setNativeQuant } from '../../src/precision/native.ts';
import { initTf, tf } from '../../lab/tf.ts';
import { buildMlp } from '../../lab/run.ts';
import { createTrainer } from '../../lab/train.ts';

/** Options of {@link benchLabStep}. */
export interface LabStepOptions { steps: number; rounds: number; fl: number; rounding: Rounding; log: (line: string) => void }

/** One row per path: median wall and CPU milliseconds per step over the rounds, and a digest of the final weights. */
export async function benchLabStep(o: LabStepOptions): Promise<string> {
  const note = await initTf();
  o.log(note);
  const fmt = fixedFormat(16 - o.fl, o.fl);
  const x = tf.randomUniform([100, 784], 0, 1, 'float32', 7);
  const y = tf.cast(tf.oneHot(tf.randomUniform([100], 0, 10, 'int32', 8), 10), 'float32');
  const paths = nativeQuant() ? [true, false] : [false];
  const res = new Map<boolean, { wall: number[]; cpu: number[]; losses: string; digest: string }>();
  for (let r = 0; r < o.rounds; r++) {
    for (const on of paths) {
      setNativeQuant(on);
      const tr = createTrainer(buildMlp(784, [1000, 1000], 10, 3), { kind: 'sgd', lr: 0.001 },
        { weights: fmt, rounding: o.rounding, grads: fmt, gradRounding: o.rounding, activations: fmt, actRounding: o.rounding, seed: 17 });
      tr.step(x, y); // first step: kernels compiled, buffers allocated
      const losses: number[] = [];
      const w0 = performance.now(), c0 = process.cpuUsage();
      for (let s = 0; s < o.steps; s++) losses.push(tr.step(x, y).loss);
      const c = process.cpuUsage(c0), wall = (performance.now() - w0) / o.steps;
      const h = createHash('sha256');
      for (const w of tr.stored()) h.update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
      const e = res.get(on) ?? { wall: [], cpu: [], losses: '', digest: '' };
      e.wall.push(wall); e.cpu.push((c.user + c.system) / 1000 / o.steps); e.losses = losses.join(','); e.digest = h.digest('hex').slice(0, 16);
      res.set(on, e);
      o.log(`round ${r + 1} ${on ? 'native' : 'js'}: ${wall.toFixed(1)} ms/step wall, load ${loadavg()[0].toFixed(2)}`);
    }
  }
  setNativeQuant(true);
  tf.dispose([x, y]);
  const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
  const lines = [
    `lab step, gupta2015 network (784-1000-1000-10, batch 100, fixed<${16 - o.fl},${o.fl}> ${o.rounding}), ${o.steps} steps x ${o.rounds} rounds per path`,
    `machine: ${cpus()[0]?.model ?? '?'}, ${cpus().length} CPUs, load average ${loadavg().map((v) => v.toFixed(2)).join(' ')}`,
    '| path | wall ms/step (median) | CPU ms/step (median) | final weights (sha256) |', '|---|---|---|---|',
  ];
  for (const [on, e] of res) lines.push(`| ${on ? 'native (native/quant.cc)' : 'JavaScript loops'} | ${med(e.wall).toFixed(1)} | ${med(e.cpu).toFixed(1)} | ${e.digest} |`);
  if (res.size === 2) {
    const [a, b] = [res.get(true)!, res.get(false)!];
    lines.push(`same losses and weights: ${a.losses === b.losses && a.digest === b.digest ? 'yes' : 'NO'}; speedup (wall) ${(med(b.wall) / med(a.wall)).toFixed(2)}x`);
  } else lines.push('native kernels unavailable: JavaScript loops only');
  return lines.join('\n');
}
