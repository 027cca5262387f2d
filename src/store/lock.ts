// One writer per output: a lock file beside OUT, created exclusively ('wx') and holding the writer's pid.
import { rmSync } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { SlimfitError } from '../core/errors.ts';

/** True if a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** A held lock; release() removes the lock file (once). */
export interface OutputLock { readonly path: string; release(): Promise<void> }

/** The lock file guarding output `abs` (an absolute path). */
export function lockPathOf(abs: string): string {
  return `${abs}.slimfit-lock`;
}

/** Pid written in a lock file, waiting briefly for a writer that created it but has not written yet. */
async function lockOwner(path: string): Promise<number | null> {
  for (let tries = 0; tries < 10; tries++) {
    const text = await readFile(path, 'utf8').catch(() => null);
    if (text === null) return null; // released meanwhile
    const pid = Number(text.trim());
    if (text.endsWith('\n') && Number.isSafeInteger(pid) && pid > 0) return pid;
    await new Promise((r) => setTimeout(r, 20));
  }
  return NaN; // garbled: not written by slimfit, or its writer died mid-write
}

/**
 * Take the lock on output `abs` (shown to the user as `shown`). Another live writer, or a lock left by a process that
 * is gone, is a SlimfitError saying what to do; a lock is never taken over silently.
 */
export async function lockOutput(abs: string, shown: string): Promise<OutputLock> {
  const path = lockPathOf(abs);
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(path, 'wx');
      try { await fh.writeFile(`${process.pid}\n`); } finally { await fh.close(); }
      const untrack = removeOnExit(path);
      let released = false;
      return { path, async release() { if (!released) { released = true; untrack(); await rm(path, { force: true }); } } };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new SlimfitError('the output folder\'s parent does not exist', { file: shown, hint: 'create it first' });
      if (code !== 'EEXIST') throw e;
    }
    const owner = await lockOwner(path);
    if (owner === null && attempt < 3) continue; // the other writer just finished: try again
    if (owner !== null && !Number.isNaN(owner) && pidAlive(owner)) {
      throw new SlimfitError(`another slimfit conversion (pid ${owner}${owner === process.pid ? ', this process' : ''}) is writing this output`, {
        file: shown, hint: 'wait for it to finish, or write to another folder',
      });
    }
    throw new SlimfitError(`a lock left by ${Number.isNaN(owner) ? 'an unknown process' : `slimfit process ${owner}, which is no longer running,`} guards this output`, {
      file: path, hint: `if no conversion is writing ${shown}, delete ${path} and run again`,
    });
  }
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * While a lock is held, remove its file if the process exits or is stopped by Ctrl-C / SIGTERM / SIGHUP (only SIGKILL
 * and crashes of the machine leave a stale lock). After removing it, a signal is raised again with the default action
 * restored when nothing else listens for it, so the process still ends the way the signal asked. Returns the undo.
 */
function removeOnExit(path: string): () => void {
  const clean = () => rmSync(path, { force: true });
  const handlers = SIGNALS.map((sig) => {
    const h = () => {
      clean();
      undo();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  process.on('exit', clean);
  const undo = () => {
    process.removeListener('exit', clean);
    for (const [sig, h] of handlers) process.removeListener(sig, h);
  };
  return undo;
}
