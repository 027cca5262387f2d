// Publishing a store atomically: under a lock on the output, build it in a sibling temp folder, then rename it into
// place (manifest already inside) without replacing a store unless asked to.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import { lockOutput, pidAlive } from './lock.ts';
import { MANIFEST_FILE } from './manifest.ts';

const TMP_MARK = '.slimfit-tmp-';
const ASIDE = '-old';

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

/** A store being built: files go into `tmp`; commit() publishes it at the output, abort() removes it. Both release the lock. */
export interface AtomicDir {
  readonly tmp: string;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Lock `out` (one writer at a time), check it may be written (an existing store only with `force`; never a non-store
 * folder), clean up after killed conversions into the same `out` (their temp folders; a store a killed `--force` had
 * moved aside goes back in place), and create a fresh temp folder beside it.
 */
export async function beginAtomicDir(out: string, force: boolean): Promise<AtomicDir> {
  const abs = resolve(out);
  const lock = await lockOutput(abs, out);
  try {
    const parent = dirname(abs);
    const prefix = `${basename(abs)}${TMP_MARK}`;
    for (const e of await readdir(parent).catch(() => [] as string[])) {
      if (!e.startsWith(prefix)) continue;
      const pid = Number(e.slice(prefix.length).split('-')[0]);
      if (!Number.isInteger(pid) || pidAlive(pid)) continue;
      if (e.endsWith(ASIDE) && (await describeOut(abs)) === 'none') await rename(join(parent, e), abs);
      else await rm(join(parent, e), { recursive: true, force: true });
    }
    const kind = await describeOut(abs);
    if (kind === 'store' && !force) {
      throw new SlimfitError('a slimfit store already exists here', { file: out, hint: 'pass force: true (--force on the command line) to replace it, or choose another output folder' });
    }
    if (kind === 'other') {
      throw new SlimfitError('the output path exists and is not a slimfit store', { file: out, hint: 'choose a new or empty folder; slimfit never deletes files it did not write' });
    }
    const tmp = join(parent, `${prefix}${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmp, { recursive: false });
    return {
      tmp,
      async commit() {
        try { await commitAtomicDir(tmp, abs, out, force); } finally { await lock.release(); }
      },
      async abort() {
        try { await rm(tmp, { recursive: true, force: true }); } finally { await lock.release(); }
      },
    };
  } catch (e) {
    await lock.release();
    throw e;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try { await fh.sync(); } catch { /* some filesystems refuse fsync on folders */ } finally { await fh.close(); }
}

/**
 * Under the lock: rename the finished temp folder to `abs`. Without `force` nothing is replaced (a store that appeared
 * meanwhile, written by something that ignores the lock, is an error; rename(2) itself refuses a non-empty folder).
 * With `force` an old store is moved aside only now that the new one is complete, and deleted after.
 */
async function commitAtomicDir(tmp: string, abs: string, out: string, force: boolean): Promise<void> {
  await syncDir(tmp);
  const kind = await describeOut(abs);
  let aside: string | null = null;
  if (kind === 'store' && !force) {
    throw new SlimfitError('a slimfit store appeared here while this conversion ran; it was left as it is', { file: out, hint: 'pass force: true (--force on the command line) to replace it, or choose another output folder' });
  } else if (kind === 'store' || kind === 'empty') {
    aside = `${tmp}${ASIDE}`;
    await rename(abs, aside);
  } else if (kind === 'other') {
    throw new SlimfitError('the output path appeared during conversion and is not a slimfit store', { file: out, hint: 'choose another output folder' });
  }
  try {
    await rename(tmp, abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (aside) await rename(aside, abs).catch(() => {});
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      throw new SlimfitError('something else was written here while this conversion ran; it was left as it is', { file: out, hint: 'choose another output folder' });
    }
    throw e;
  }
  await syncDir(dirname(abs));
  if (aside) await rm(aside, { recursive: true, force: true });
}

/** Real path of `p`, or of its deepest existing ancestor joined with the rest (for outputs that do not exist yet). */
async function realish(p: string): Promise<string> {
  const abs = resolve(p);
  try { return await realpath(abs); } catch { /* not there yet */ }
  const parent = dirname(abs);
  return parent === abs ? abs : join(await realish(parent), basename(abs));
}

/**
 * Refuse an output inside an input folder (it would be listed as part of its own input, e.g. as a class of an image
 * tree) or an input inside the output (replacing the output would delete it).
 */
export async function checkOutsideInputs(out: string, inputs: readonly string[]): Promise<void> {
  const o = await realish(out);
  for (const input of inputs) {
    const i = await realish(input);
    const inside = (a: string, b: string) => a === b || a.startsWith(b.endsWith(sep) ? b : b + sep);
    if (inside(o, i)) {
      throw new SlimfitError(`the output is ${o === i ? 'the input itself' : `inside the input ${input}`}; it would be read as part of its own input`, {
        file: out, hint: 'write the store to a folder outside the input',
      });
    }
    if (inside(i, o)) {
      throw new SlimfitError(`the input ${input} is inside the output folder; replacing the output would delete it`, {
        file: out, hint: 'write the store to a folder that does not hold the input',
      });
    }
  }
}
