// Publishing a store atomically: build it in a sibling temp folder, then rename it into place (manifest already inside).
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import { MANIFEST_FILE } from './manifest.ts';

const TMP_MARK = '.slimfit-tmp-';

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** What is at `out` now: nothing, an empty folder, a slimfit store, or something else. */
async function describeOut(out: string): Promise<'none' | 'empty' | 'store' | 'other'> {
  try {
    const st = await stat(out);
    if (!st.isDirectory()) return 'other';
  } catch {
    return 'none';
  }
  const entries = await readdir(out);
  if (entries.length === 0) return 'empty';
  return entries.includes(MANIFEST_FILE) ? 'store' : 'other';
}

/**
 * Check `out` may be written (refuses to replace a store without `force`, and never replaces a non-store folder),
 * remove temp folders left by killed conversions into the same `out`, and create a fresh temp folder beside it.
 */
export async function beginAtomicDir(out: string, force: boolean): Promise<string> {
  const abs = resolve(out);
  const kind = await describeOut(abs);
  if (kind === 'store' && !force) {
    throw new SlimfitError('a slimfit store already exists here', { file: out, hint: 'pass --force to replace it, or choose another output folder' });
  }
  if (kind === 'other') {
    throw new SlimfitError('the output path exists and is not a slimfit store', { file: out, hint: 'choose a new or empty folder; slimfit never deletes files it did not write' });
  }
  const parent = dirname(abs);
  const prefix = `${basename(abs)}${TMP_MARK}`;
  for (const e of await readdir(parent).catch(() => [] as string[])) {
    if (!e.startsWith(prefix)) continue;
    const pid = Number(e.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && !pidAlive(pid)) await rm(join(parent, e), { recursive: true, force: true });
  }
  const tmp = join(parent, `${prefix}${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp, { recursive: false }).catch(async (e) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SlimfitError('the output folder\'s parent does not exist', { file: parent, hint: 'create it first' });
    }
    throw e;
  });
  return tmp;
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try { await fh.sync(); } catch { /* some filesystems refuse fsync on folders */ } finally { await fh.close(); }
}

/** Rename the finished temp folder to `out`; an old store there is moved aside first and deleted after. */
export async function commitAtomicDir(tmp: string, out: string): Promise<void> {
  const abs = resolve(out);
  await syncDir(tmp);
  const kind = await describeOut(abs);
  let aside: string | null = null;
  if (kind === 'store' || kind === 'empty') {
    aside = `${tmp}-old`;
    await rename(abs, aside);
  } else if (kind === 'other') {
    throw new SlimfitError('the output path appeared during conversion and is not a slimfit store', { file: out, hint: 'choose another output folder' });
  }
  await rename(tmp, abs);
  await syncDir(dirname(abs));
  if (aside) await rm(aside, { recursive: true, force: true });
}
