// Training benchmark (not a test): `slimfit train` (store -> loader -> tfjs layers on the chosen backend) vs PyTorch
// on the same architecture, the same MNIST store, batch and optimizer, measured in the same run. Reports samples/s,
// the ratio, test accuracy, wall time and peak RSS of each.
// Usage: node --import tsx bench/train.ts [STORE_DIR] [--epochs E] [--models mlp,cnn] [--batch B]
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { formatBytes } from '../src/core/rss.ts';
import { MNIST_DIR, ROOT, runCli, tempDir } from '../dev/helpers.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const epochs = Number(flag('--epochs', '1'));
const batch = Number(flag('--batch', '128'));
const models = flag('--models', 'mlp,cnn').split(',');
const tmp = tempDir('slimfit-bench-train-');

let store = args[0] && !args[0].startsWith('--') ? args[0] : join(tmp.dir, 'mnist');
if (!existsSync(join(store, 'dataset.json'))) {
  const r = await runCli(['convert', MNIST_DIR, store, '-q']);
  if (r.code !== 0) throw new Error(r.stderr);
}

interface Row { model: string; sf: number; sfAcc: number; sfWall: number; sfRss: number; pt: number; ptAcc: number; ptWall: number; ptRss: number; note: string }
const rows: Row[] = [];
for (const model of models) {
  const out = join(tmp.dir, `run-${model}`);
  const t0 = performance.now();
  const r = await runCli(['train', store, '--model', model, '--epochs', String(epochs), '--batch', String(batch), '--val-fraction', '0', '--out', out]);
  const sfWall = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(r.stderr);
  const log = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { samples: number; seconds: number });
  const sf = log.reduce((a, e) => a + e.samples, 0) / log.reduce((a, e) => a + e.seconds, 0);
  const sfAcc = Number(/test accuracy ([\d.]+)%/.exec(r.stdout)?.[1]) / 100;
  const note = /backend: [^\n]*/.exec(r.stderr)?.[0] ?? '';
  // PyTorch with all cores and with one intra-op thread (its BLAS may still use every core; on 2 cores that is often
  // faster than oversubscribing): the faster of the two is the peer.
  type Pt = { samplesPerSec: number; testAccuracy: number; peakRss: number; version: string; threads: number; wall: number };
  const pts: Pt[] = [];
  for (const threads of [cpus().length, 1]) {
    const t1 = performance.now();
    const p = spawnSync('/usr/bin/python3', [join(ROOT, 'bench', 'train-torch.py'), model, store, String(epochs), String(batch), String(threads)], { encoding: 'utf8' });
    if (p.status !== 0) throw new Error(`PyTorch peer failed: ${p.stderr}`);
    pts.push({ ...(JSON.parse(p.stdout.trim().split('\n').pop()!) as Omit<Pt, 'wall'>), wall: (performance.now() - t1) / 1000 });
    process.stderr.write(`${model}: PyTorch (${threads} intra-op threads) ${pts[pts.length - 1].samplesPerSec.toFixed(0)} samples/s\n`);
  }
  const pt = pts.reduce((a, b) => (b.samplesPerSec > a.samplesPerSec ? b : a));
  const other = pts.find((q) => q !== pt)!;
  rows.push({ model, sf, sfAcc, sfWall, sfRss: r.peakRss, pt: pt.samplesPerSec, ptAcc: pt.testAccuracy, ptWall: pt.wall, ptRss: pt.peakRss,
    note: `${model}: ${note}; PyTorch ${pt.version} at its faster setting, ${pt.threads} intra-op thread(s) (${other.threads}: ${other.samplesPerSec.toFixed(0)} samples/s)` });
  process.stderr.write(`${model}: slimfit ${sf.toFixed(0)} samples/s, PyTorch ${pt.samplesPerSec.toFixed(0)} samples/s\n`);
}

const lines = [
  `Training throughput, MNIST store ${store}, ${epochs} epoch(s), batch ${batch}, Adam 1e-3; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}); ${new Date().toISOString()}`,
  '',
  '| model | slimfit samples/s | PyTorch samples/s | ratio slimfit/PyTorch | slimfit test acc | PyTorch test acc | slimfit wall s | PyTorch wall s | slimfit peak RSS | PyTorch peak RSS |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map((x) => `| ${x.model} | ${x.sf.toFixed(0)} | ${x.pt.toFixed(0)} | ${(x.sf / x.pt).toFixed(2)}x | ${(100 * x.sfAcc).toFixed(2)}% | ${(100 * x.ptAcc).toFixed(2)}% | ${x.sfWall.toFixed(1)} | ${x.ptWall.toFixed(1)} | ${formatBytes(x.sfRss)} | ${formatBytes(x.ptRss)} |`),
  '',
  ...rows.map((x) => `- ${x.note}`),
  '- samples/s counts the training epochs only (slimfit: from log.jsonl, includes waiting on the loader; PyTorch: its loop incl. memmap gather); wall time includes start-up, test evaluation and (slimfit) checkpoints and report.',
];
process.stdout.write(lines.join('\n') + '\n');
tmp.cleanup();
