// Peak RSS of an epoch does not grow with the store: 10x more data, within +10%.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeStore } from './loader-fixtures.ts';
import { ROOT, runCli, tempDir } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-loader-rss-');
after(() => tmp.cleanup());
const CHILD = join(ROOT, 'test', 'loader-rss-child.mjs');

/** Peak RSS of one epoch in a child process: the lowest of three runs (GC timing on a busy machine moves single runs by a few MB). */
async function peak(dir: string, n: number, args: string[]): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await runCli([dir, ...args], { script: CHILD });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).samples, n);
    runs.push(r.peakRss);
  }
  return Math.min(...runs);
}

test('a 10x larger store: peak RSS within +10% (global with copied batches; block with an 8 MB window and lent buffers)', { timeout: 58_000 }, async () => {
  const small = join(tmp.dir, 'small'), big = join(tmp.dir, 'big');
  await makeStore(small, { n: 40_000, h: 28, w: 28, shardBytes: 8e6 }); // 31 MB of images
  await makeStore(big, { n: 400_000, h: 28, w: 28, shardBytes: 8e6 }); // 314 MB
  for (const [shuffle, reuse] of [['global', '0'], ['block', '1']]) {
    // Both runs hand out the same 400k samples (1x: 10 epochs, 10x: one), so the only difference is the data size:
    // V8 grows its young generation over a longer run (~14 MB here after 3k batches, then flat), which is not data.
    const a = await peak(small, 400_000, [shuffle, reuse, '10']);
    const b = await peak(big, 400_000, [shuffle, reuse, '1']);
    const ratio = b / a;
    console.log(`${shuffle}: peak RSS 1x ${(a / 1e6).toFixed(1)} MB, 10x ${(b / 1e6).toFixed(1)} MB, ratio ${ratio.toFixed(3)}`);
    assert.ok(ratio <= 1.1, `${shuffle}: 10x data took ${ratio.toFixed(3)}x the peak RSS`);
  }
});
