// The output lock (src/store/lock.ts) met in-process, as a library user's application meets it: signal listeners of
// the application's own, and a lock file that is no longer this process's.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../dev/helpers.ts';
import { lockOutput, lockPathOf } from '../src/store/lock.ts';

test('correct: a signal the application listens for itself leaves the lock in place (the conversion may go on)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'out');
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      const lock = await lockOutput(out, out);
      let heard = 0;
      const app = () => { heard++; };
      process.on(sig, app);
      try {
        process.emit(sig, sig);
        assert.equal(heard, 1);
        assert.equal(readFileSync(lockPathOf(out), 'utf8'), `${process.pid}\n`, `${sig}: the lock is still held`);
        // A second writer is still refused.
        await assert.rejects(lockOutput(out, out), (e: Error) => e.name === 'SlimfitError' && e.message.includes('this process'));
      } finally {
        process.removeListener(sig, app);
        await lock.release();
      }
      assert.equal(existsSync(lockPathOf(out)), false, 'release() removes it');
    }
  } finally { cleanup(); }
});

test('correct: release() leaves a lock file that another writer took after ours was deleted', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'out');
    const lock = await lockOutput(out, out);
    // Ours deleted (by hand), then another process took the lock.
    rmSync(lockPathOf(out));
    writeFileSync(lockPathOf(out), '999999999\n');
    await lock.release();
    assert.equal(readFileSync(lockPathOf(out), 'utf8'), '999999999\n');
    // Same with the foreign pid written over our own file.
    rmSync(lockPathOf(out));
    const lock2 = await lockOutput(out, out);
    writeFileSync(lockPathOf(out), '999999998\n');
    await lock2.release();
    assert.equal(readFileSync(lockPathOf(out), 'utf8'), '999999998\n');
  } finally { cleanup(); }
});

test('correct: with no listener of its own, a process holding two locks that gets SIGTERM removes both and still ends by the signal', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const { spawnSync } = await import('node:child_process');
    const lockTs = new URL('../src/store/lock.ts', import.meta.url).href;
    const code = `
      const { lockOutput } = await import(${JSON.stringify(lockTs)});
      await lockOutput(process.argv[1], 'a'); await lockOutput(process.argv[2], 'b');
      process.kill(process.pid, 'SIGTERM');
      setTimeout(() => process.stdout.write('still running'), 2000);`;
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, a, b], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.signal, 'SIGTERM', r.stderr + r.stdout);
    assert.equal(existsSync(lockPathOf(a)), false);
    assert.equal(existsSync(lockPathOf(b)), false);
  } finally { cleanup(); }
});

test('clear error: a lock path that cannot be read as a lock (a folder) is reported as a lock of an unknown process, never "process null"', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'out');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(lockPathOf(out));
    await assert.rejects(lockOutput(out, out), (e: Error) => {
      assert.equal(e.name, 'SlimfitError');
      assert.doesNotMatch(e.message, /null/);
      assert.match(e.message, /unknown process/);
      assert.ok(e.message.includes(`delete ${lockPathOf(out)}`), e.message);
      return true;
    });
  } finally { cleanup(); }
});
