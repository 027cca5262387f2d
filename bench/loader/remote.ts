// `npm run bench -- loader DIR --remote`: the same store read from disk, from nginx over loopback (cold shard cache:
// every shard downloaded during the run), through a proxy adding latency to each request, and numpy memmap gathers from disk.
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatBytes } from '../../src/core/rss.ts';
import { readManifestAt } from '../../src/store/remote.ts';
import { startFaultProxy, startNginx } from '../../dev/remote-servers.ts';
import type { BenchChildSpec } from './child.ts';
import { type Raw, runChild as run } from './bench.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PEERS = join(ROOT, 'bench', 'loader_peers.py');
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'child.ts');

/** Options of {@link benchRemoteLoader}. */
export interface RemoteBenchOptions { batch?: number; seconds?: number; workers?: number; latencyMs?: number; split?: string; log?: (l: string) => void }

/** Run the remote-store loader bench on the store in `dir`; returns a markdown table. */
export async function benchRemoteLoader(dir: string, o: RemoteBenchOptions = {}): Promise<string> {
  const log = o.log ?? (() => {});
  const batch = o.batch ?? 128, seconds = o.seconds ?? 15, workers = o.workers ?? 1, latency = o.latencyMs ?? 20;
  const m = await readManifestAt(dir);
  const split = o.split ?? (m.splits.train ? 'train' : Object.keys(m.splits)[0]);
  const info = m.splits[split];
  const storeBytes = info.shards.reduce((a, s) => a + s.x.bytes + s.y.bytes, 0);
  const tmp = mkdtempSync(join(tmpdir(), 'slimfit-remote-bench-'));
  chmodSync(tmp, 0o755); // nginx's worker runs as an unprivileged user
  const www = join(tmp, 'www');
  mkdirSync(www);
  const served = join(www, basename(dir));
  cpSync(dir, served, { recursive: true });
  for (const d of [served, ...Object.keys(m.splits).map((s) => join(served, s))]) try { chmodSync(d, 0o755); } catch { /* not a folder */ }
  const nginx = await startNginx(www, join(tmp, 'nginx'));
  const proxy = await startFaultProxy(nginx.port, { latencyMs: latency });
  const window = 4; // shards per window of the shard shuffle (the default for remote stores)
  let cacheN = 0;
  const slim = (name: string, url: string, cacheLimit?: number, autoWindow = false) => ({
    name,
    run: async () => {
      const cacheDir = join(tmp, `cache-${cacheN++}`);
      const spec: BenchChildSpec = {
        dir: url, split, batch, seconds, workers, shuffle: 'shard', reuse: false, io: 'pread', native: true, ...(autoWindow ? {} : { shuffleShards: window }),
        ...(cacheLimit ? { remote: { cacheDir, cacheLimit } } : {}),
      };
      const r = await run(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(spec)]);
      const peak = (r as Raw & { cachePeak?: number }).cachePeak;
      return { ...r, note: cacheLimit ? `cache limit ${formatBytes(cacheLimit)}, peak ${formatBytes(peak ?? NaN)} on disk` : 'local folder' };
    },
  });
  const xFiles = info.shards.map((s) => join(served, s.x.file)), yFiles = info.shards.map((s) => join(served, s.y.file));
  const contenders = [
    { name: 'numpy memmap + fancy-index gather (global shuffle, local)', run: async () => ({ ...(await run('python3', [PEERS, 'numpy', JSON.stringify({ x: xFiles, y: yFiles, batch, seconds, seed: 0, workers: 0 })])), note: 'local folder' }) },
    slim(`slimfit shard shuffle (${window} shards per window), local store`, served),
    slim(`slimfit shard shuffle (${window} shards per window), nginx over loopback, cold cache`, `${nginx.url}/${basename(dir)}`, storeBytes * 2),
    slim('slimfit shard shuffle, nginx, cold cache of 1/4 of the store (window sized to the cache)', `${nginx.url}/${basename(dir)}`, Math.floor(storeBytes / 4), true),
    slim(`slimfit shard shuffle (${window} shards per window), nginx + ${latency} ms added per request, cold cache`, `${proxy.url}/${basename(dir)}`, storeBytes * 2),
  ];
  const rows: string[] = [];
  const load0 = loadavg()[0];
  try {
    for (const c of contenders) {
      log(c.name);
      try {
        const r = await c.run();
        const sps = r.samples / r.seconds;
        log(`  ${Math.round(sps)} samples/s`);
        rows.push(`| ${c.name} | ${Math.round(sps).toLocaleString('en-US')} | ${formatBytes(r.peakRss)} | ${r.note} |`);
      } catch (e) {
        rows.push(`| ${c.name} | failed: ${(e as Error).message.slice(0, 200)} | | |`);
      }
    }
  } finally {
    await proxy.stop();
    await nginx.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  const load1 = loadavg()[0];
  return [
    `Shard-shuffled float32 batches, batch ${batch}, ${workers} worker(s), split '${split}' of ${dir} (${info.samples} samples, ` +
      `${formatBytes(storeBytes)} in ${info.shards.length} shard pair(s)); each contender runs up to ${seconds} s or one epoch, timed from its first batch. ` +
      `Remote runs start with an empty cache, so downloads are part of the time. Machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), 1-minute load average ${load0.toFixed(1)} before, ${load1.toFixed(1)} after.`,
    '',
    '| contender | samples/s | peak RSS | store |',
    '|---|---:|---:|---|',
    ...rows,
  ].join('\n');
}
