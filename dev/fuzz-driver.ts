// Runs many mutated inputs through the library path `slimfit convert` (or, for a store, `info`, `verify` and a
// loader batch) in one process and classifies each outcome: ok (a valid store / result), clear (a SlimfitError),
// fail (any other exception). Used by test/fuzz.test.ts; one JSON line per case on stdout:
//   {"case":i,"start":true}   before the case runs (the parent kills the driver when no result follows in time)
//   {"case":i,"outcome":"ok"|"clear"|"fail","message":"..."}
// and {"peakRss":bytes} at the end. Usage: node --import tsx dev/fuzz-driver.ts JOB.json
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isSlimfitError } from '../src/core/errors.ts';
import { peakRssBytes } from '../src/core/rss.ts';
import { openInput } from '../src/formats/open-source.ts';
import { messyOptionsFromCli } from '../src/formats/messy.ts';
import { writeStore } from '../src/store/write.ts';
import { type Manifest, readManifest } from '../src/store/manifest.ts';
import { createHash } from 'node:crypto';
import { summarizeStore } from '../src/store/summary.ts';
import { verifyStore } from '../src/store/verify.ts';
import { createLoader, openDataset } from '../src/loader/index.ts';

/** What the parent asks for. */
export interface FuzzJob {
  /** 'convert': SRC is converted; 'store': SRC is a store to info/verify/load. */
  kind: 'convert' | 'store';
  /** The valid fixture: a file, or a folder (image tree, store). */
  fixture: string;
  /** Files (relative to a folder fixture; '' for a file fixture) the mutations pick from. */
  targets: string[];
  /** Convert options as commander gives them (e.g. {x: 'x', y: 'y'}). */
  options?: Record<string, unknown>;
  /** A folder fixture holding an x/y file pair (.npy or IDX): converted as `slimfit convert --x DIR/X --y DIR/Y OUT`. */
  pair?: { x: string; y: string };
  /** Seed of the mutations; case i uses seed * 1e6 + i. */
  seed: number;
  first: number;
  cases: number;
  /** Loader workers for a store's first batch (default: the loader's own choice). */
  loaderWorkers?: number;
  /** Mutate JSON targets structurally (values replaced, keys dropped) instead of bytewise. */
  json?: boolean;
  /** Run the fixture unchanged (a control: every case must be ok). */
  control?: boolean;
  /** Scratch folder (emptied per case). */
  work: string;
}

/** xorshift32 seeded through murmur3's finalizer (nearby seeds start far apart): small, the same on every platform. */
function rng(seed: number): () => number {
  let s = Math.floor(seed / 2 ** 32) ^ (seed >>> 0);
  s = Math.imul(s ^ (s >>> 16), 0x85ebca6b); s = Math.imul(s ^ (s >>> 13), 0xc2b2ae35); s ^= s >>> 16;
  s = (s >>> 0) || 0x9e3779b9;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

/** Apply 1-3 random byte flips, truncations, insertions or overwrites; half of them aimed at the first 512 bytes (headers). */
export function mutate(input: Buffer, seed: number): Buffer {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  let b = Buffer.from(input);
  const ops = 1 + int(3);
  for (let k = 0; k < ops; k++) {
    const span = r() < 0.5 ? Math.min(512, b.length) : b.length;
    const at = span ? int(span) : 0;
    switch (int(4)) {
      case 0: // flip 1-8 bytes
        for (let j = 0, n = 1 + int(8); j < n && b.length; j++) b[(at + int(16)) % b.length] ^= 1 + int(255);
        break;
      case 1: // truncate
        b = b.subarray(0, at);
        break;
      case 2: { // insert 1-16 random bytes
        const ins = Buffer.from(Array.from({ length: 1 + int(16) }, () => int(256)));
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        break;
      }
      default: { // overwrite a run with 0x00 or 0xff (lengths and counts become 0 or huge)
        const v = r() < 0.5 ? 0 : 0xff;
        for (let j = 0, n = 1 + int(8); j < n && at + j < b.length; j++) b[at + j] = v;
      }
    }
  }
  return b;
}

/** Replace 1-3 random values of a JSON document (or drop their keys) with hostile ones: wrong types, negatives, huge numbers. */
export function mutateJson(input: Buffer, seed: number): Buffer {
  const r = rng(seed);
  const doc = JSON.parse(input.toString('utf8')) as unknown;
  const nodes: Array<{ parent: Record<string, unknown> | unknown[]; key: string | number }> = [];
  const walk = (v: unknown) => {
    if (v && typeof v === 'object') {
      for (const [k, c] of Object.entries(v)) { nodes.push({ parent: v as Record<string, unknown>, key: Array.isArray(v) ? Number(k) : k }); walk(c); }
    }
  };
  walk(doc);
  const hostile: unknown[] = [null, -1, 0, 1.5, 1e300, 2 ** 53, -(2 ** 31), 'x', '', '../../etc/passwd', [], {}, true, [1e9, 1e9], { a: 1 }, 'NaN'];
  for (let k = 0, n = 1 + Math.floor(r() * 3); k < n && nodes.length; k++) {
    const { parent, key } = nodes[Math.floor(r() * nodes.length)];
    if (r() < 0.15 && !Array.isArray(parent)) delete (parent as Record<string, unknown>)[key as string];
    else (parent as Record<string | number, unknown>)[key] = hostile[Math.floor(r() * hostile.length)];
  }
  return Buffer.from(JSON.stringify(doc, null, 2));
}

function filesUnder(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel)).flatMap((n) => {
    const p = rel ? `${rel}/${n}` : n;
    return statSync(join(dir, p)).isDirectory() ? filesUnder(dir, p) : [p];
  });
}

/** Convert `src` the way `slimfit convert SRC OUT` does, then check the result is a store that verifies. */
async function convertOnce(src: string | undefined, out: string, options: Record<string, unknown>): Promise<void> {
  const input = await openInput(src, { ...options, ...messyOptionsFromCli(options) });
  const sources = input.kind === 'single' ? [input.source] : input.splits.map((s) => s.source);
  try {
    await writeStore(out, input.kind === 'single'
      ? { kind: 'ratio', source: input.source, ratios: [{ name: 'train', fraction: 1 }], seed: 0 }
      : { kind: 'presplit', splits: input.splits }, { quiet: true });
  } finally {
    for (const s of sources) await s.close();
  }
  const v = await verifyStore(out, { quiet: true });
  if (v.bad.length) throw new Error(`a store written from this input does not verify: ${v.bad[0].file}: ${v.bad[0].problem}`);
}

/** What a store holds, as one hash: every shard's checksum in order, the skipped list and the non-finite counts. */
function storeDigest(out: string): string {
  const m = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8')) as Manifest;
  const parts = Object.entries(m.splits).map(([k, s]) => [k, s.samples, s.nonFinite ?? 0, s.shards.map((sh) => [sh.x.sha256, sh.y.sha256])]);
  return createHash('sha256').update(JSON.stringify([parts, m.provenance.skipped ?? []])).digest('hex');
}

/** What `slimfit info`, `slimfit verify` and a first training batch do with the store at `dir`. */
async function useStore(dir: string, workers: number | undefined): Promise<void> {
  let firstError: unknown = null;
  const attempt = async (f: () => Promise<unknown>) => { try { await f(); } catch (e) { if (!isSlimfitError(e)) throw e; firstError ??= e; } };
  await attempt(async () => summarizeStore(dir, await readManifest(dir)));
  await attempt(() => verifyStore(dir, { quiet: true }));
  await attempt(async () => {
    const ds = await openDataset(dir);
    try {
      for (const name of ds.splits) {
        const loader = createLoader(ds.split(name), { batchSize: 16, normalize: 'stats', workers });
        try {
          for await (const b of loader) { void b; break; }
        } finally { await loader.close(); } // its worker threads live until closed
      }
    } finally { await ds.close(); }
  });
  if (firstError) throw firstError;
}

async function main(): Promise<void> {
  const job = JSON.parse(readFileSync(process.argv[2], 'utf8')) as FuzzJob;
  const isDir = statSync(job.fixture).isDirectory();
  const targets = job.targets.length ? job.targets : isDir ? filesUnder(job.fixture) : [''];
  const name = isDir ? 'input' : `input${job.fixture.slice(job.fixture.lastIndexOf('/')).replace(/^\/[^.]*/, '')}`;
  for (let i = job.first; i < job.first + job.cases; i++) {
    process.stdout.write(JSON.stringify({ case: i, start: true }) + '\n');
    rmSync(job.work, { recursive: true, force: true });
    mkdirSync(job.work, { recursive: true });
    const src = join(job.work, name);
    const seed = job.seed * 1e6 + i;
    const target = targets[Math.floor(rng(seed ^ 0x5bd1e995)() * targets.length)];
    if (isDir) cpSync(job.fixture, src, { recursive: true });
    const file = isDir ? join(src, target) : src;
    const original = readFileSync(isDir ? join(job.fixture, target) : job.fixture);
    writeFileSync(file, job.control ? original : job.json ? mutateJson(original, seed) : mutate(original, seed));
    let outcome: 'ok' | 'clear' | 'fail' = 'ok';
    let message = '';
    let digest = '';
    try {
      if (job.kind === 'store') await useStore(src, job.loaderWorkers);
      else if (job.pair) await convertOnce(undefined, join(job.work, 'out'), { ...job.options, x: join(src, job.pair.x), y: join(src, job.pair.y) });
      else await convertOnce(src, join(job.work, 'out'), job.options ?? {});
      if (job.kind === 'convert') digest = storeDigest(join(job.work, 'out'));
    } catch (e) {
      outcome = isSlimfitError(e) ? 'clear' : 'fail';
      message = e instanceof Error ? (outcome === 'fail' ? `${e.stack}` : e.message) : String(e);
    }
    // The result for comparing runs (e.g. native CSV loop on/off): the store's digest, or the error message.
    const result = outcome === 'ok' ? digest : message.split(job.work).join('WORK');
    // peak RSS so far: the case where it jumps is the one that allocated
    process.stdout.write(JSON.stringify({ case: i, outcome, target, message: message.slice(0, 2000), result, peakSoFar: peakRssBytes() }) + '\n');
  }
  rmSync(job.work, { recursive: true, force: true });
  process.stdout.write(JSON.stringify({ peakRss: peakRssBytes() }) + '\n');
}

// Run as a script; imported (e.g. to replay one mutation with mutate()), it does nothing.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
