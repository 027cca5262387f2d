// The fused Dense step as one process runs it (forward, backward and Adam in one native call) against the split form
// data-parallel training uses (gradients into a buffer, a reduce, then Adam per tensor), with a no-op reduce: what
// splitting the step costs before any communication. Prints `fused-ms=<median> split-ms=<median>` per step.
import { initBackend, tf } from '../../src/train/backend.ts';
import { compileDefault } from '../../src/train/loop.ts';
import { buildModel } from '../../src/train/models.ts';
import { denseTrainStep, engineActive } from '../../src/engine/index.ts';

const batch = Number(process.argv[2] ?? 64), steps = Number(process.argv[3] ?? 60);
await initBackend();
const x = new Float32Array(batch * 784).map((_, i) => ((i * 7919) % 255) / 255);
const y = new Float32Array(batch * 10);
for (let i = 0; i < batch; i++) y[i * 10 + (i % 10)] = 1;
const time = (split: boolean): number => {
  const m = buildModel('mlp', { inputShape: [28, 28, 1], classes: 10, seed: 0 });
  compileDefault(m);
  const r = denseTrainStep(tf, m, engineActive(), split ? { reduce: () => {} } : {});
  if (!r.step) throw new Error(`no fused step: ${r.reason}`);
  const ts: number[] = [];
  for (let i = 0; i < steps + 5; i++) {
    const t0 = performance.now();
    r.step(x, y, batch);
    if (i >= 5) ts.push(performance.now() - t0);
  }
  r.dispose();
  m.dispose();
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
};
// alternate to share the machine's load between both
const f: number[] = [], s: number[] = [];
for (let k = 0; k < 3; k++) { f.push(time(false)); s.push(time(true)); }
f.sort((a, b) => a - b); s.sort((a, b) => a - b);
process.stdout.write(`fused-ms=${f[1]} split-ms=${s[1]}\n`);
