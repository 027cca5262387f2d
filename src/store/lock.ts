// One writer per output: a lock file beside OUT, created exclusively ('wx') and holding the writer's pid.
import { readFileSync, rmSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { SlimfitError } from '../core/errors.ts';

/** True if a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** A held lock; release() removes the lock file (once, and only if it is still this lock: see removeIfOurs). */
export interface OutputLock { readonly path: string; release(): Promise<void> }

/** The lock file guarding output `abs` (an absolute path). */
export function lockPathOf(abs: string): string {
  return `${abs}.slimfit-lock`;
}

/**
 * Pid written in a lock file, waiting briefly for a writer that created it but has not written yet; null if the file is
 * gone (released meanwhile), NaN if it is not a lock slimfit wrote (garbled, or unreadable such as a folder).
 */
async function lockOwner(path: string): Promise<number | null> {
  for (let tries = 0; tries < 10; tries++) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null; // released meanwhile
      return NaN; // unreadable (e.g. a folder in its place): not a lock slimfit wrote
    }
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
      let mine: Held;
      try {
        await fh.writeFile(`${process.pid}\n`);
        const st = await fh.stat();
        mine = { path, dev: st.dev, ino: st.ino };
      } finally { await fh.close(); }
      track(mine);
      let released = false;
      return { path, async release() { if (!released) { released = true; untrack(mine); removeIfOurs(mine); } } };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new SlimfitError('the output folder\'s parent does not exist', { file: shown, hint: 'create it first' });
      if (code !== 'EEXIST') throw e;
    }
    const owner = await lockOwner(path);
    if (owner === null && attempt < 3) continue; // the other writer just finished: try again
    if (owner === null) {
      // Taken by someone else at each attempt and gone before its pid could be read: writers following each other.
      throw new SlimfitError('other conversions kept taking and releasing the lock on this output while this one tried to take it', {
        file: shown, hint: 'wait for them to finish, or write to another folder',
      });
    }
    if (!Number.isNaN(owner) && pidAlive(owner)) {
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

/** A lock file this process created: its path and the identity (device, inode) of the file it created there. */
interface Held { readonly path: string; readonly dev: number; readonly ino: number }

/**
 * Remove the lock file only if it is still the one this process created and holds our pid. If it was deleted meanwhile
 * (by a user, or by a handler of an older slimfit) another writer may have taken the lock since: deleting its file
 * would let a third writer in beside it. (A file swapped in between this check and the removal is not guarded
 * against; the window is a few microseconds, not the length of a conversion.)
 */
function removeIfOurs(h: Held): void {
  try {
    const st = statSync(h.path);
    if (st.dev !== h.dev || st.ino !== h.ino || readFileSync(h.path, 'utf8') !== `${process.pid}\n`) return;
    rmSync(h.path, { force: true });
  } catch { /* gone already: nothing of ours to remove */ }
}

/** Locks held by this process now; the exit and signal listeners below are registered while it is not empty. */
const held = new Set<Held>();

const onExit = () => { for (const h of held) removeIfOurs(h); };

/**
 * On Ctrl-C / SIGTERM / SIGHUP, when no one else listens for the signal, Node's default would end the process at once:
 * remove the lock files, stop listening, and raise the signal again with the default action so the process still ends
 * the way the signal asked (only SIGKILL and machine crashes leave a stale lock). When the application has listeners
 * of its own it decides whether the process ends, so the conversion may go on: the lock must stay while it does (if it
 * ends by process.exit, onExit removes the lock then).
 */
const onSignal = Object.fromEntries(SIGNALS.map((sig) => [sig, () => {
  if (process.listenerCount(sig) > 1) return;
  onExit();
  held.clear();
  unlisten();
  process.kill(process.pid, sig);
}])) as Record<(typeof SIGNALS)[number], () => void>;

function listen(): void {
  process.on('exit', onExit);
  for (const sig of SIGNALS) process.on(sig, onSignal[sig]);
}

function unlisten(): void {
  process.removeListener('exit', onExit);
  for (const sig of SIGNALS) process.removeListener(sig, onSignal[sig]);
}

/** Start removing `h` at exit and on signals (one set of listeners for all locks, so they never count each other). */
function track(h: Held): void {
  if (held.size === 0) listen();
  held.add(h);
}

function untrack(h: Held): void {
  if (held.delete(h) && held.size === 0) unlisten();
}
