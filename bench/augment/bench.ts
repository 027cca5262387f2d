// `npm run bench -- augment STORE`: augmented loader throughput beside the cnn's training throughput, measured in the
// same run (issue 20 asks for augmented batches/s >= 10x the batches/s the cnn trains).
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { createLoader, openDataset } from '../../src/loader/index.ts';
import { parseAugmentSpec } from '../../src/loader/augment.ts';
import { trainLoaderOptions } from '../../src/train/data.ts';
import { runCli, tempDir } from '../../dev/helpers.ts';

/** Options for {@link benchAugment}. */
export interface AugmentBenchOptions {
  /** `--augment` spec measured (and used by the training run). */
  augment: string;
  batch: number;
  /** Seconds per loader measurement (after its first batch). */
  seconds: number;
  /** Loader worker counts to measure. */
  workers: number[];
  /** Skip the cnn training run (loader numbers only). */
  noTrain?: boolean;
  log: (l: string) => void;
}

/** Batches/s and samples/s of one loader configuration over `seconds` (timed after the first batch, epochs repeat). */
async function loaderRate(store: string, o: { augment?: string; batch: number; seconds: number; workers: number }): Promise<{ batchesPerSec: number; samplesPerSec: number }> {
  const ds = await openDataset(store);
  const src = ds.split('train');
  const classes = ds.manifest.classNames?.length ?? 10;
  const l = createLoader(src, trainLoaderOptions(src, classes, { batchSize: o.batch, workers: o.workers, augment: o.augment ? parseAugmentSpec(o.augment) : undefined, seed: 1 }));
  let batches = 0, samples = 0, t0 = 0, t1 = 0;
  try {
    outer: for (;;) {
      for await (const b of l) {
        const now = performance.now();
        if (t0 === 0) { t0 = now; continue; }
        batches++; samples += b.n; t1 = now;
        if (now - t0 >= o.seconds * 1000) break outer;
      }
    }
  } finally { await l.close(); await ds.close(); }
  const s = (t1 - t0) / 1000;
  return { batchesPerSec: batches / s, samplesPerSec: samples / s };
}

/** Run the benchmark; returns a markdown report. */
export async function benchAugment(store: string, o: AugmentBenchOptions): Promise<string> {
  const load0 = loadavg();
  const rows: string[] = [];
  let train: { samplesPerSec: number } | null = null;
  if (!o.noTrain) {
    const tmp = tempDir('slimfit-bench-augment-');
    try {
      o.log(`training the cnn for one epoch with --augment ${o.augment}...`);
      const out = join(tmp.dir, 'run');
      const r = await runCli(['train', store, '--model', 'cnn', '--epochs', '1', '--batch', String(o.batch), '--augment', o.augment, '--val-fraction', '0', '--no-test', '--out', out]);
      if (r.code !== 0) throw new Error(`slimfit train failed: ${r.stderr}`);
      const e = JSON.parse(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n')[0]) as { samples: number; seconds: number };
      train = { samplesPerSec: e.samples / e.seconds };
      o.log(`cnn trains ${train.samplesPerSec.toFixed(0)} samples/s (${(train.samplesPerSec / o.batch).toFixed(1)} batches/s)`);
    } finally { tmp.cleanup(); }
  }
  for (const w of o.workers) {
    for (const aug of [o.augment, '']) {
      o.log(`loader, ${w} worker(s), ${aug ? `--augment ${aug}` : 'no augmentation'}...`);
      const r = await loaderRate(store, { augment: aug, batch: o.batch, seconds: o.seconds, workers: w });
      const vs = train ? `${(r.samplesPerSec / train.samplesPerSec).toFixed(1)}x` : 'n/a';
      rows.push(`| ${w} | ${aug || 'none'} | ${r.batchesPerSec.toFixed(0)} | ${r.samplesPerSec.toFixed(0)} | ${vs} |`);
    }
  }
  const load1 = loadavg();
  return [
    `Augmented loader vs cnn training, store ${store}, batch ${o.batch}; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}); load average ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at end; ${new Date().toISOString()}`,
    '',
    train ? `cnn training (slimfit train, 1 epoch, --augment ${o.augment}): ${train.samplesPerSec.toFixed(0)} samples/s = ${(train.samplesPerSec / o.batch).toFixed(1)} batches/s` : 'cnn training: not run (--no-train)',
    '',
    '| loader workers | augmentation | batches/s | samples/s | x cnn training |',
    '|---:|---|---:|---:|---:|',
    ...rows,
    '',
    '- loader: float32 batches (normalize, one-hot) as training gets them, timed after the first batch; the training run uses cores-1 loader workers.',
  ].join('\n');
}
