// Stores read by URL through real servers on 127.0.0.1: nginx (HTTP with Range) and s3rver (the S3 protocol), and a
// fault-injecting TCP proxy in between. An epoch read by URL must give the same batches, byte for byte, as the local
// store at the same seed and shuffle; damage on the wire or in the cache is caught by the manifest's SHA-256.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { haveNginx, startFaultProxy, startNginx, startS3 } from '../dev/remote-servers.ts';
import { ROOT, py, runCli, tempDir } from '../dev/helpers.ts';
import { createLoader, openDataset } from '../src/loader/index.ts';
import { openBackend, RETRY_DEFAULTS, uploadFile } from '../src/remote/index.ts';
import { remoteCacheStats } from '../src/store/remote.ts';
import { makeStore } from './loader-fixtures.ts';

// s3rver accepts any credentials; the SDK's standard chain reads them from the environment.
process.env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
process.env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';

const N = 3000;
const SHARD = 75 * 64; // x shards of 75 samples of 64 bytes: 40 shards
let tmp: { dir: string; cleanup: () => void };
let www: string, store: string, storeBytes: number, maxShard: number;
let nginx: Awaited<ReturnType<typeof startNginx>> | null = null;
let s3: Awaited<ReturnType<typeof startS3>>;
let localDigest: string;
let cacheN = 0;
const OPTS = { batchSize: 50, shuffle: 'block' as const, seed: 7, workers: 1, shuffleWindow: 6000, shuffleBlock: 3000 };
const FAST = { attempts: 5, baseDelayMs: 5, maxDelayMs: 40, idleTimeoutMs: 400 };

/** Digest of one epoch's batches (x and y bytes in order), the samples seen and the largest cache size seen per batch. */
async function epoch(dir: string, remote?: Record<string, unknown>, opts: Record<string, unknown> = {}): Promise<{ digest: string; n: number; peakDisk: number }> {
  const ds = await openDataset(dir, remote ? { remote } : {});
  const loader = createLoader(ds.split('train'), { ...OPTS, ...opts });
  const h = createHash('sha256');
  let n = 0, peakDisk = 0;
  const shards = remote ? join(String(remote.cacheDir), 'shards') : null;
  try {
    for await (const b of loader) {
      h.update(new Uint8Array(b.x.buffer, b.x.byteOffset, b.x.byteLength));
      h.update(new Uint8Array(b.y.buffer, b.y.byteOffset, b.y.byteLength));
      n += b.n;
      if (shards) peakDisk = Math.max(peakDisk, readdirSync(shards).reduce((a, f) => a + statSync(join(shards, f)).size, 0));
    }
  } finally {
    await loader.close();
    await ds.close();
  }
  return { digest: h.digest('hex'), n, peakDisk };
}

const newCache = () => join(tmp.dir, `cache-${cacheN++}`);

before(async () => {
  tmp = tempDir('slimfit-remote-');
  chmodSync(tmp.dir, 0o755); // nginx's worker runs as an unprivileged user
  www = join(tmp.dir, 'www');
  mkdirSync(www);
  store = join(www, 'store');
  await makeStore(store, { n: N, shardBytes: SHARD });
  const m = JSON.parse(readFileSync(join(store, 'dataset.json'), 'utf8'));
  const files = m.splits.train.shards.flatMap((s: { x: { bytes: number }; y: { bytes: number } }) => [s.x, s.y]);
  storeBytes = files.reduce((a: number, f: { bytes: number }) => a + f.bytes, 0);
  maxShard = Math.max(...files.map((f: { bytes: number }) => f.bytes));
  localDigest = (await epoch(store)).digest;
  if (haveNginx()) nginx = await startNginx(www, join(tmp.dir, 'nginx'));
  mkdirSync(join(tmp.dir, 's3'));
  s3 = await startS3(join(tmp.dir, 's3'), ['bucket']);
  // The local store copied to the bucket is a remote store.
  const b = openBackend('s3://bucket/mnist', { endpoint: s3.endpoint });
  for (const f of ['dataset.json', ...readdirSync(join(store, 'train')).map((x) => `train/${x}`)]) await uploadFile(b, f, { path: join(store, f) }, RETRY_DEFAULTS);
  b.close();
});

after(async () => {
  await nginx?.stop();
  await s3?.stop();
  tmp?.cleanup();
});

const needNginx = () => (haveNginx() ? false : 'nginx is not installed (.ci/run installs it)');

test('an epoch from nginx with a cache of 1/4 of the store equals the local epoch, and the cache stays under its limit plus one shard', { skip: needNginx() }, async () => {
  const cacheDir = newCache();
  const limit = Math.floor(storeBytes / 4);
  const r = await epoch(`${nginx!.url}/store`, { cacheDir, cacheLimit: limit });
  assert.equal(r.n, N);
  assert.equal(r.digest, localDigest);
  assert.ok(r.peakDisk <= limit + maxShard, `cache peaked at ${r.peakDisk} bytes; limit ${limit} + one shard ${maxShard}`);
  const st = remoteCacheStats(cacheDir)!;
  assert.ok(st.peakBytes <= limit + maxShard, `peak ${st.peakBytes}`);
  assert.ok(st.evictions > 0, 'a quarter-size cache must evict');
  // The same epoch again, with the cache warm, is the same.
  assert.equal((await epoch(`${nginx!.url}/store`, { cacheDir, cacheLimit: limit })).digest, localDigest);
});

test('an epoch from s3:// (s3rver) equals the local epoch, also with a global shuffle that fits the cache', async () => {
  const remote = { cacheDir: newCache(), cacheLimit: Math.floor(storeBytes / 4), endpoint: s3.endpoint };
  assert.equal((await epoch('s3://bucket/mnist', remote)).digest, localDigest);
  const big = { ...remote, cacheLimit: storeBytes * 2 };
  assert.equal((await epoch('s3://bucket/mnist', big, { shuffle: 'global' })).digest, (await epoch(store, undefined, { shuffle: 'global' })).digest);
  // A global shuffle over a store larger than the cache would thrash: refused, with the fix.
  await assert.rejects(epoch('s3://bucket/mnist', remote, { shuffle: 'global' }), /global shuffle reads every shard.*cache limit/s);
});

test('through a faulty proxy (cut mid-body, 503, 500, stalls, flipped bytes) the epoch still equals the local one', { skip: needNginx() }, async () => {
  const proxy = await startFaultProxy(nginx!.port, {});
  try {
    const url = `${proxy.url}/store`;
    // Each fault hits the next connections: the manifest read and the first shard downloads.
    proxy.faults.status = { code: 503, count: 2 };
    const a = await epoch(url, { cacheDir: newCache(), cacheLimit: storeBytes, retry: FAST });
    assert.equal(a.digest, localDigest);
    proxy.faults.cutAfter = 5000; // one connection cut 5000 bytes in: resumed by Range
    proxy.faults.flip = { offset: 400, count: 2 }; // a flipped byte in the body: SHA-256 mismatch, fetched again
    proxy.faults.stall = { count: 1 }; // no answer: the idle timeout gives up on it
    proxy.faults.latencyMs = 1;
    const b = await epoch(url, { cacheDir: newCache(), cacheLimit: storeBytes, retry: FAST });
    assert.equal(b.digest, localDigest);
    assert.ok(proxy.injected.cut >= 1 && proxy.injected.flip >= 1 && proxy.injected.stall >= 1 && proxy.injected.status >= 2, JSON.stringify(proxy.injected));
  } finally { await proxy.stop(); }
});

test('a server that keeps failing stops the epoch with one error naming the URL and the HTTP status; a corrupting one with the checksum', { skip: needNginx() }, async () => {
  const proxy = await startFaultProxy(nginx!.port, {});
  try {
    const url = `${proxy.url}/store`;
    // Manifest first (clean), then every connection answers 500.
    const ds = await openDataset(url, { remote: { cacheDir: newCache(), cacheLimit: storeBytes, retry: FAST } });
    proxy.faults.status = { code: 500, count: 1000 };
    const loader = createLoader(ds.split('train'), OPTS);
    await assert.rejects(async () => { for await (const _ of loader) { /* nothing arrives */ } }, (e: Error) => {
      assert.match(e.message, new RegExp(`^${proxy.url.replace(/\./g, '\\.')}/store/train/[xy]-\\d+\\.npy: download failed: HTTP 500`));
      assert.match(e.message, /5 attempts/);
      return true;
    });
    await loader.close();
    proxy.faults.status = undefined;
    // Every response body corrupted: never delivered, an error about the checksum instead.
    proxy.faults.flip = { offset: 400, count: 1000 };
    const loader2 = createLoader(ds.split('train'), OPTS);
    await assert.rejects(async () => { for await (const _ of loader2) { /* nothing arrives */ } }, /do not match the manifest's SHA-256/);
    await loader2.close();
    await ds.close();
  } finally { await proxy.stop(); }
});

test('a flipped byte or a truncation in a cached shard is caught by its checksum and the shard is fetched again', { skip: needNginx() }, async () => {
  const cacheDir = newCache();
  const remote = { cacheDir, cacheLimit: storeBytes * 2 };
  assert.equal((await epoch(`${nginx!.url}/store`, remote)).digest, localDigest);
  const entries = readdirSync(join(cacheDir, 'shards')).map((f) => join(cacheDir, 'shards', f)).sort((a, b) => statSync(b).size - statSync(a).size);
  const flipped = entries[0], cut = entries[1];
  const bytes = readFileSync(flipped);
  bytes[bytes.length - 3] ^= 1;
  writeFileSync(flipped, bytes);
  writeFileSync(cut, readFileSync(cut).subarray(0, 1000));
  const before = remoteCacheStats(cacheDir)!.refetched;
  assert.equal((await epoch(`${nginx!.url}/store`, remote)).digest, localDigest);
  assert.equal(remoteCacheStats(cacheDir)!.refetched - before, 2);
  assert.notDeepEqual(readFileSync(flipped), bytes);
});

test('convert SRC s3://... uploads a store readers open by URL; --force semantics; push and pull round-trip; http refuses writes', async () => {
  const endpoint = s3.endpoint;
  const src = join(tmp.dir, 'src.npz');
  py(`import numpy as np\nx=(np.arange(300*16)%251).astype(np.uint8).reshape(300,4,4)\ny=(np.arange(300)%3).astype(np.uint8)\nnp.savez('${src}', x=x, y=y)`);
  const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
  const conv = await runCli(['convert', src, 's3://bucket/conv', '--x', 'x', '--y', 'y', '--shard-size', '1k', '--endpoint', endpoint, '-q'], { env });
  assert.equal(conv.code, 0, conv.stderr);
  // The same conversion locally gives the same shards (names, sizes, checksums).
  const local = join(tmp.dir, 'conv-local');
  assert.equal((await runCli(['convert', src, local, '--x', 'x', '--y', 'y', '--shard-size', '1k', '-q'])).code, 0);
  const info = await runCli(['info', 's3://bucket/conv', '--json', '--endpoint', endpoint], { env });
  assert.equal(info.code, 0, info.stderr);
  const strip = (m: { splits: unknown }) => JSON.stringify(m.splits);
  assert.equal(strip(JSON.parse(info.stdout)), strip(JSON.parse(readFileSync(join(local, 'dataset.json'), 'utf8'))));
  // A second convert into the same URL is refused without --force, like a local store.
  const again = await runCli(['convert', src, 's3://bucket/conv', '--x', 'x', '--y', 'y', '--endpoint', endpoint, '-q'], { env });
  assert.equal(again.code, 1);
  assert.match(again.stderr, /s3:\/\/bucket\/conv: already holds a slimfit store.*--force/);
  assert.equal((await runCli(['convert', src, 's3://bucket/conv', '--x', 'x', '--y', 'y', '--endpoint', endpoint, '-q', '--force'], { env })).code, 0);
  // verify by URL downloads and checks every shard.
  const ver = await runCli(['verify', 's3://bucket/conv', '--endpoint', endpoint, '--cache-dir', newCache(), '-q'], { env });
  assert.equal(ver.code, 0, ver.stderr);
  assert.match(ver.stdout, /all checksums match/);
  // push a local store, pull it back over HTTP... and S3: byte-identical shards.
  assert.equal((await runCli(['push', local, 's3://bucket/pushed', '--endpoint', endpoint, '-q'], { env })).code, 0);
  const back = join(tmp.dir, 'pulled');
  const pull = await runCli(['pull', 's3://bucket/pushed', back, '--endpoint', endpoint, '-q'], { env });
  assert.equal(pull.code, 0, pull.stderr);
  for (const f of readdirSync(join(local, 'train'))) assert.deepEqual(readFileSync(join(back, 'train', f)), readFileSync(join(local, 'train', f)));
  // The duplicate list (49 samples repeat here) travels with the store: pushed and pulled, and written by a convert to
  // a URL, whose first copies are found by downloading the uploaded shards again.
  assert.ok(existsSync(join(local, 'duplicates.json')));
  assert.deepEqual(readFileSync(join(back, 'duplicates.json')), readFileSync(join(local, 'duplicates.json')));
  const convBack = join(tmp.dir, 'pulled-conv');
  assert.equal((await runCli(['pull', 's3://bucket/conv', convBack, '--endpoint', endpoint, '-q'], { env })).code, 0);
  assert.deepEqual(JSON.parse(readFileSync(join(convBack, 'duplicates.json'), 'utf8')), JSON.parse(readFileSync(join(local, 'duplicates.json'), 'utf8')));
  if (nginx) {
    const put = await runCli(['push', local, `${nginx.url}/x`, '-q']);
    assert.equal(put.code, 1);
    assert.match(put.stderr, /cannot write to http:\/\/127\.0\.0\.1:\d+\/x: plain HTTP\(S\) stores are read-only/);
  }
});

test('slimfit train on a store URL (mlp, one epoch) reports the same loss and accuracy as on the local store', { skip: needNginx() }, async () => {
  const runs = join(tmp.dir, 'runs');
  const common = ['--model', 'mlp', '--epochs', '1', '--batch', '100', '--seed', '3', '--shuffle', 'block', '--workers', '1', '--no-test', '--json'];
  const a = await runCli(['train', store, ...common, '--out', join(runs, 'local')]);
  assert.equal(a.code, 0, a.stderr);
  // A remote store's block window is sized to the cache; with a cache of 5x the store it spans the epoch, as locally.
  const b = await runCli(['train', `${nginx!.url}/store`, ...common, '--out', join(runs, 'remote'), '--cache-dir', newCache(), '--cache-limit', String(storeBytes * 5)]);
  assert.equal(b.code, 0, b.stderr);
  const final = (r: { stdout: string }) => JSON.parse(r.stdout).final;
  assert.ok(final(a).loss > 0);
  assert.deepEqual(final(b), final(a));
});

test('train on a URL with a small cache: the shard window shrinks to fit and is saved in run.json; --balanced keeps a global draw; show draws from a window', { skip: needNginx() }, async () => {
  const runs = join(tmp.dir, 'runs-small');
  const url = `${nginx!.url}/store`;
  const small = ['--cache-dir', newCache(), '--cache-limit', String(storeBytes / 2)];
  const common = ['--model', 'mlp', '--epochs', '1', '--batch', '100', '--no-test', '--json'];
  const a = await runCli(['train', url, ...common, ...small, '--out', join(runs, 'a')]);
  assert.equal(a.code, 0, a.stderr);
  const cfg = JSON.parse(readFileSync(join(runs, 'a', 'run.json'), 'utf8'));
  assert.equal(cfg.shuffle, 'shard');
  const fits = Math.floor(storeBytes / 2 / (2 * maxShard));
  assert.ok(cfg.shuffleShards >= 1 && cfg.shuffleShards <= Math.max(1, fits), `window ${cfg.shuffleShards} shards, at most ${fits} fit`);
  const b = await runCli(['train', url, ...common, '--cache-dir', newCache(), '--cache-limit', String(storeBytes * 2), '--balanced', '--out', join(runs, 'b')]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(JSON.parse(readFileSync(join(runs, 'b', 'run.json'), 'utf8')).shuffle, 'global');
  const shown = await runCli(['show', url, '-n', '4', ...small, '--out', join(runs, 's.png')]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /wrote 4 random samples/);
});

test('three processes reading one URL through one small cache folder each get the local epoch, and leave no temp, lock or pin files', { skip: needNginx() }, async () => {
  const cacheDir = newCache();
  const limit = Math.floor(storeBytes / 4);
  const child = () => new Promise<string>((resolve, reject) => {
    const c = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'remote-share-child.ts'), `${nginx!.url}/store`, cacheDir, String(limit), JSON.stringify(OPTS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`child failed (${code}): ${err.slice(-800)}`))));
  });
  const digests = await Promise.all([child(), child(), child()]);
  assert.deepEqual(digests, [localDigest, localDigest, localDigest]);
  for (const d of ['tmp', 'locks', 'pins']) assert.deepEqual(readdirSync(join(cacheDir, d)), [], d);
});
