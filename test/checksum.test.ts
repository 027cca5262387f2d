// The once-per-process shard check (src/store/checksum.ts): passes are remembered per file identity, failures are not.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../dev/helpers.ts';
import { checkShardOnce } from '../src/store/checksum.ts';

/** A shard file in `dir` with its bytes and the manifest entry that matches them. */
function goodShard(dir: string): { shard: string; good: Buffer; expected: { sha256: string; bytes: number } } {
  const shard = join(dir, 'x-00000.npy');
  const good = Buffer.from('shard bytes '.repeat(100));
  writeFileSync(shard, good);
  return { shard, good, expected: { sha256: createHash('sha256').update(good).digest('hex'), bytes: good.length } };
}

test('correct: a shard that failed its check (damaged, then repaired in the same process) passes when checked again', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { shard, good, expected } = goodShard(dir);
    const bad = Buffer.from(good);
    bad[5] ^= 1;
    writeFileSync(shard, bad);
    await assert.rejects(checkShardOnce(shard, expected, dir), (e: Error) => e.name === 'SlimfitError' && /does not match its SHA-256/.test(e.message));
    writeFileSync(shard, good);
    await checkShardOnce(shard, expected, dir);
    // A missing shard that appears later (restored in the same process): the same.
    const shard2 = join(dir, 'x-00001.npy');
    await assert.rejects(checkShardOnce(shard2, expected, dir), (e: Error) => e.name === 'SlimfitError' && /is missing/.test(e.message));
    writeFileSync(shard2, good);
    await checkShardOnce(shard2, expected, dir);
  } finally { cleanup(); }
});

test('clear error: a shard that passed and was then replaced in the same process (a store rewritten under it) is checked again', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { shard, good, expected } = goodShard(dir);
    await checkShardOnce(shard, expected, dir);
    await checkShardOnce(shard, expected, dir); // unchanged: the remembered pass
    const bad = Buffer.from(good);
    bad[7] ^= 1;
    writeFileSync(join(dir, 'next'), bad);
    renameSync(join(dir, 'next'), shard); // a new file at the same path, as a conversion's rename puts it there
    await assert.rejects(checkShardOnce(shard, expected, dir), (e: Error) => e.name === 'SlimfitError' && /does not match its SHA-256/.test(e.message));
  } finally { cleanup(); }
});
