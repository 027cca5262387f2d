// `npm run bench -- loader DIR`: the batch generator against numpy memmap and PyTorch DataLoader, measured in the same run.
import type { Command } from 'commander';
import { SlimfitError } from '../../src/core/errors.ts';

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
    .option('--shuffle <list>', 'slimfit shuffle modes to time, comma-separated (global, block, shard); the quality table has all', 'global,block,shard')
    .option('--shuffle-shards <n>', 'shards per window of the shard shuffle (default: the loader\'s)')
    .option('--no-torch', 'skip the PyTorch DataLoader peers')
    .option('--out <file>', 'also write the markdown table to this file')
    .option('--goal', 'instead: the default loader and lent buffers vs numpy memmap on this (mapped) store and on it repeated --times times (read with pread), warm and cold, --repeat rounds')
    .option('--times <n>', 'with --goal: how often the big store repeats this one', '10')
    .option('--remote', 'instead: the store served by nginx on 127.0.0.1 (and through a proxy adding --latency ms) vs the local store and numpy memmap')
    .option('--latency <ms>', 'with --remote: delay the proxy adds per chunk', '20')
    .option('--json', 'print the table\'s rows and notes (skipped or failed contenders) as one JSON object ({rows, notes}) instead of markdown (not with --remote; --out still writes markdown)')
    .action(async (dir: string, o: { split?: string; batch: string; seconds: string; workers: string; cold?: boolean; repeat: string; out?: string; shuffle: string; shuffleShards?: string; torch: boolean; remote?: boolean; latency: string; goal?: boolean; times: string; json?: boolean }) => {
      if (o.json && o.remote) throw new SlimfitError('--json is not available with --remote', { hint: 'drop --json; the remote bench prints markdown only' });
      const print = (res: { rows: unknown[]; notes: string[]; markdown: string }): void => { process.stdout.write(o.json ? `${JSON.stringify({ rows: res.rows, notes: res.notes })}\n` : `${res.markdown}\n`); };
      if (o.goal) {
        const { benchLoaderGoal } = await import('../loader/goal.ts');
        const res = await benchLoaderGoal(dir, { split: o.split, batch: Number(o.batch), seconds: Number(o.seconds), repeat: Number(o.repeat), cold: o.cold !== false, times: Number(o.times), log: (l) => process.stderr.write(`${l}\n`) });
        print(res);
        if (o.out) { const { rename, writeFile } = await import('node:fs/promises'); await writeFile(`${o.out}.tmp`, `${res.markdown}\n`); await rename(`${o.out}.tmp`, o.out); }
        return;
      }
      if (o.remote) {
        const { benchRemoteLoader } = await import('../loader/remote.ts');
        const md = await benchRemoteLoader(dir, { split: o.split, batch: Number(o.batch), seconds: Number(o.seconds), workers: Number(o.workers.split(',')[0]), latencyMs: Number(o.latency), log: (l) => process.stderr.write(`${l}\n`) });
        process.stdout.write(`${md}\n`);
        if (o.out) { const { rename, writeFile } = await import('node:fs/promises'); await writeFile(`${o.out}.tmp`, `${md}\n`); await rename(`${o.out}.tmp`, o.out); }
        return;
      }
      const shuffles = o.shuffle.split(',').filter(Boolean);
      for (const m of shuffles) if (!['global', 'block', 'shard'].includes(m)) throw new SlimfitError(`unknown --shuffle mode '${m}'`, { hint: 'use global, block, shard' });
      const shards = o.shuffleShards === undefined ? undefined : Number(o.shuffleShards);
      if (shards !== undefined && !(Number.isSafeInteger(shards) && shards >= 1)) throw new SlimfitError(`--shuffle-shards must be a whole number >= 1, got '${o.shuffleShards}'`);
      const { benchLoader } = await import('../loader/bench.ts');
      const { rename, writeFile } = await import('node:fs/promises');
      const res = await benchLoader(dir, {
        split: o.split, batch: Number(o.batch), seconds: Number(o.seconds), workers: o.workers.split(',').map(Number),
        cold: o.cold, repeat: Number(o.repeat), torch: o.torch, log: (l) => process.stderr.write(`${l}\n`),
        shuffles: shuffles as Array<'global' | 'block' | 'shard'>, shuffleShards: shards,
      });
      print(res);
      if (o.out) { await writeFile(`${o.out}.tmp`, `${res.markdown}\n`); await rename(`${o.out}.tmp`, o.out); }
    });
}
