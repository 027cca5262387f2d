// The once-per-process shard check (src/store/checksum.ts): passes are remembered, failures are not.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../dev/helpers.ts';
import { checkShardOnce } from '../src/store/checksum.ts';

test('correct: a shard that failed its check (damaged, then repaired in the same process) passes when checked again', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const shard = join(dir, 'x-00000.npy');
    const good = Buffer.from('shard bytes '.repeat(100));
    writeFileSync(shard, good);
    const expected = { sha256: createHash('sha256').update(good).digest('hex'), bytes: good.length };
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
