// `npm run bench -- loader DIR`: the batch generator against numpy memmap and PyTorch DataLoader, measured in the same run.
import type { Command } from 'commander';

/** Register `npm run bench -- loader`. */
export function register(program: Command): void {
  program
    .command('loader')
    .description('shuffled float32 batches from a store: samples/s, MB/s and peak RSS vs numpy memmap gathers and PyTorch DataLoader')
    .argument('<dir>', 'a slimfit store with uint8 images')
    .option('--split <name>', 'split to read (default train)')
    .option('--batch <n>', 'batch size', '128')
    .option('--seconds <s>', 'seconds per contender', '15')
    .option('--workers <list>', 'slimfit worker counts, comma-separated', '1,2')
    .option('--cold', 'also measure with the store evicted from the page cache before each contender')
    .option('--repeat <n>', 'rounds over all contenders (interleaved), medians reported', '1')
    .option('--no-torch', 'skip the PyTorch DataLoader peers')
    .option('--out <file>', 'also write the markdown table to this file')
    .action(async (dir: string, o: { split?: string; batch: string; seconds: string; workers: string; cold?: boolean; repeat: string; out?: string; torch: boolean }) => {
      const { benchLoader } = await import('../loader/bench.ts');
      const { rename, writeFile } = await import('node:fs/promises');
      const res = await benchLoader(dir, {
        split: o.split, batch: Number(o.batch), seconds: Number(o.seconds), workers: o.workers.split(',').map(Number),
        cold: o.cold, repeat: Number(o.repeat), torch: o.torch, log: (l) => process.stderr.write(`${l}\n`),
      });
      process.stdout.write(`${res.markdown}\n`);
      if (o.out) { await writeFile(`${o.out}.tmp`, `${res.markdown}\n`); await rename(`${o.out}.tmp`, o.out); }
    });
}
