// Publishing a store atomically: under a lock on the output, build it in a sibling temp folder, then rename it into
// place (manifest already inside) without replacing a store unless asked to.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, realpath, rename, rm, rmdir, stat } from 'node:fs/promises';
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
 * moved aside goes back in place, or is kept and named in an error when it cannot: see settleAsides), and create a
 * fresh temp folder beside it.
 */
export async function beginAtomicDir(out: string, force: boolean): Promise<AtomicDir> {
  const abs = resolve(out);
  const lock = await lockOutput(abs, out);
  try {
    const parent = dirname(abs);
    const prefix = `${basename(abs)}${TMP_MARK}`;
    const asides: string[] = [];
    for (const e of await readdir(parent).catch(() => [] as string[])) {
      if (!e.startsWith(prefix)) continue;
      const pid = Number(e.slice(prefix.length).split('-')[0]);
      if (!Number.isInteger(pid) || pidAlive(pid)) continue;
      if (e.endsWith(ASIDE)) asides.push(join(parent, e)); // the old store of a killed --force: handled below
      else await rm(join(parent, e), { recursive: true, force: true }); // an unfinished new store: nothing to keep
    }
    await settleAsides(asides, abs, out);
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

/**
 * Old stores that killed `--force` conversions had moved aside (`asides`, their processes gone). One goes back in place
 * when nothing is at `abs`; it is deleted only when `abs` holds a complete store (the killed conversion's new one, whose
 * manifest went in before its rename), or when it is an empty folder. In any other case (`abs` an empty or foreign
 * folder made since, or several set-aside copies) nothing is deleted: a SlimfitError names where each copy is and how
 * to restore it, since guessing could delete the only copy of the user's store.
 */
async function settleAsides(asides: readonly string[], abs: string, out: string): Promise<void> {
  const kept: string[] = [];
  for (const aside of asides) {
    if ((await describeOut(aside)) === 'empty') { await rmdir(aside).catch(() => {}); continue; } // nothing in it to lose
    kept.push(aside);
  }
  if (kept.length === 0) return;
  const kind = await describeOut(abs);
  if (kept.length === 1 && kind === 'none') { await rename(kept[0], abs); return; }
  if (kept.length === 1 && kind === 'store') { await rm(kept[0], { recursive: true, force: true }); return; }
  const where = kind === 'empty' ? 'an empty folder' : kind === 'store' ? 'a store' : kind === 'none' ? 'missing' : 'not a slimfit store';
  throw new SlimfitError(`${kept.length === 1 ? 'the old store' : `${kept.length} old stores`} that a killed --force conversion moved aside ${kept.length === 1 ? 'is' : 'are'} kept at ${kept.join(', ')}, and the output is ${where}; nothing was deleted`, {
    file: out,
    hint: kept.length === 1
      ? `to restore the old store, ${kind === 'none' ? '' : `move ${out} out of the way (it is ${where}) and `}rename ${kept[0]} to ${out}; if you do not need it, delete ${kept[0]}; then run again`
      : `keep the one you want by renaming it to ${out} (after moving ${out} out of the way) and delete the others; then run again`,
  });
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
