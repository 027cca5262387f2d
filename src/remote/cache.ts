// The local cache of remote shards: whole files named by their SHA-256 (so a shard shared by two stores, or by two
// processes, is one entry), a byte limit with least-recently-used eviction, and safe sharing between processes:
// downloads go to a temporary file renamed into place, one downloader per entry (an O_EXCL lock file holding its pid),
// and entries another process is using (a pin file per process) are never evicted.
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import { sleep } from './retry.ts';

/** Settings of a ShardCache. */
export interface ShardCacheOptions {
  /** Cache folder (created when missing). */
  dir: string;
  /** Bytes the entries may take; entries in use can push it over by what they need. */
  limitBytes: number;
  /** Whether the file at `path` has the expected SHA-256 (run on an entry found on disk, once per process and file identity). */
  checkFile(path: string, sha256: string): Promise<boolean>;
}

/** Disk figures of a cache. */
export interface CacheStats {
  /** Bytes of entries on disk now (all processes). */
  bytes: number;
  files: number;
  /** Largest `bytes` this process saw right after adding an entry. */
  peakBytes: number;
  downloads: number;
  hits: number;
  evictions: number;
  /** Entries found damaged (size or checksum) and fetched again. */
  refetched: number;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

const isHex = (s: string) => /^[0-9a-f]{64}$/.test(s);

/**
 * A bounded cache of verified shard files shared by processes on one machine.
 *
 * @example
 * const cache = new ShardCache({ dir: '/tmp/c', limitBytes: 1 << 30, checkFile: async (p, sha) => (await sha256File(p)) === sha });
 * const path = await cache.acquire(sha, bytes, (tmp) => downloadFile(backend, key, tmp, { sha256: sha, bytes }, policy));
 * // ... read `path` ...
 * cache.release(sha);
 */
export class ShardCache {
  readonly dir: string;
  readonly limitBytes: number;
  private readonly checkFile: ShardCacheOptions['checkFile'];
  private readonly pins = new Map<string, number>();
  /** Entries this process has seen whole and correct: sha -> file identity (inode, size, mtime). */
  private readonly verified = new Map<string, string>();
  private readonly busy = new Map<string, Promise<string>>();
  /** Bytes of this process's downloads in progress (in tmp/, not yet counted on disk): room is kept for them. */
  private reserved = 0;
  private stats: CacheStats = { bytes: 0, files: 0, peakBytes: 0, downloads: 0, hits: 0, evictions: 0, refetched: 0 };

  constructor(opts: ShardCacheOptions) {
    this.dir = opts.dir;
    this.limitBytes = opts.limitBytes;
    this.checkFile = opts.checkFile;
    try {
      for (const d of ['shards', 'pins', 'locks', 'tmp']) mkdirSync(join(this.dir, d), { recursive: true });
    } catch (e) {
      throw new SlimfitError(`cannot create the cache folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: this.dir, hint: 'pass another cacheDir (--cache-dir) or set SLIMFIT_CACHE to a writable folder' });
    }
  }

  /** Where the entry for `sha256` lives (exists only while acquired, or until evicted). */
  pathOf(sha256: string): string {
    return join(this.dir, 'shards', `${sha256}.npy`);
  }

  /** Whether the entry is on disk and known good to this process (no I/O beyond a stat). */
  has(sha256: string): boolean {
    const id = this.identity(this.pathOf(sha256));
    return id !== null && this.verified.get(sha256) === id;
  }

  private identity(path: string): string | null {
    try { const st = statSync(path); return `${st.ino}:${st.size}:${st.mtimeMs}`; } catch { return null; }
  }

  private pin(sha: string): void {
    const n = this.pins.get(sha) ?? 0;
    this.pins.set(sha, n + 1);
    if (n === 0) { const fd = openSync(join(this.dir, 'pins', `${sha}.${process.pid}`), 'w'); closeSync(fd); }
  }

  /** Stop using an entry acquired with {@link acquire} (once per acquire); unused entries may be evicted. */
  release(sha256: string): void {
    const n = this.pins.get(sha256) ?? 0;
    if (n <= 1) {
      this.pins.delete(sha256);
      try { unlinkSync(join(this.dir, 'pins', `${sha256}.${process.pid}`)); } catch { /* already gone */ }
    } else this.pins.set(sha256, n - 1);
  }

  /** Release every pin of this process (at close). */
  releaseAll(): void {
    for (const sha of [...this.pins.keys()]) { this.pins.set(sha, 1); this.release(sha); }
  }

  /**
   * Make the entry for `sha256` present and correct, pinned until {@link release}: a verified entry is used as is, a
   * damaged one (wrong size or checksum) is deleted and fetched again, a missing one is fetched by `fetch(tmp)` (which
   * must leave exactly the verified bytes in `tmp`) while other processes wait for it. Returns the entry's path.
   */
  async acquire(sha256: string, bytes: number, fetch: (tmp: string) => Promise<void>): Promise<string> {
    if (!isHex(sha256)) throw new Error(`bad cache key ${sha256}`);
    this.pin(sha256);
    try {
      let p = this.busy.get(sha256);
      if (!p) {
        p = this.ensure(sha256, bytes, fetch);
        this.busy.set(sha256, p);
        p.then(() => this.busy.delete(sha256), () => this.busy.delete(sha256));
      }
      return await p;
    } catch (e) {
      this.release(sha256);
      throw e;
    }
  }

  /** Take the entry's lock file (O_EXCL, holding our pid), waiting while a live process holds it; a dead holder's lock is taken over. */
  private async lock(sha: string): Promise<() => void> {
    const lock = join(this.dir, 'locks', `${sha}.lock`);
    for (;;) {
      try {
        const fd = openSync(lock, 'wx');
        try { writeSync(fd, String(process.pid)); } finally { closeSync(fd); }
        return () => { try { unlinkSync(lock); } catch { /* gone */ } };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let pid = NaN;
      try { pid = Number(readFileSync(lock, 'utf8')); } catch { continue; }
      // An empty file is a lock being written right now: wait for it like a live one.
      if (!Number.isSafeInteger(pid) || pid <= 0 || alive(pid)) { await sleep(20); continue; }
      try { unlinkSync(lock); } catch { /* someone else took it over */ }
    }
  }

  /**
   * Under the entry's lock (so no other process evicts or replaces it meanwhile, and one downloads it): use the entry
   * if it is whole and correct, else fetch it. The caller's pin exists before the lock is released, so an evictor,
   * which takes the same lock and then looks at the pins, never removes an entry in use.
   */
  private async ensure(sha: string, bytes: number, fetch: (tmp: string) => Promise<void>): Promise<string> {
    const path = this.pathOf(sha);
    const unlock = await this.lock(sha);
    try {
      if (await this.usable(sha, path, bytes)) { this.touch(path); this.stats.hits++; return path; }
      this.makeRoom(bytes, sha);
      this.reserved += bytes;
      const tmp = join(this.dir, 'tmp', `${sha}.${process.pid}.${randomBytes(4).toString('hex')}`);
      try {
        await fetch(tmp);
        const st = statSync(tmp);
        if (st.size !== bytes) throw new Error(`download of ${sha} left ${st.size} bytes, expected ${bytes}`);
        renameSync(tmp, path);
      } catch (e) {
        try { unlinkSync(tmp); } catch { /* never created */ }
        throw e;
      } finally {
        this.reserved -= bytes;
      }
      const id = this.identity(path);
      if (id) this.verified.set(sha, id);
      this.stats.downloads++;
      this.stats.peakBytes = Math.max(this.stats.peakBytes, this.scan().bytes);
      return path;
    } finally {
      unlock();
    }
  }

  /** Present with the right size and (once per process and file identity) the right SHA-256; a damaged entry is removed. */
  private async usable(sha: string, path: string, bytes: number): Promise<boolean> {
    const id = this.identity(path);
    if (id === null) return false;
    if (this.verified.get(sha) === id) return true;
    const size = Number(id.split(':')[1]);
    const good = size === bytes && await this.checkFile(path, sha).catch(() => false);
    if (good) {
      this.verified.set(sha, id);
      return true;
    }
    this.verified.delete(sha);
    this.stats.refetched++;
    try { unlinkSync(path); } catch { /* gone already */ }
    return false;
  }

  /** Mark an entry used now (the access time orders eviction; the mtime, part of its identity, is kept). */
  private touch(path: string): void {
    try { const st = statSync(path); utimesSync(path, new Date(), st.mtime); } catch { /* evicted meanwhile */ }
  }

  /** Entries pinned by any live process. */
  private pinned(): Set<string> {
    const out = new Set<string>(this.pins.keys());
    for (const f of readdirSync(join(this.dir, 'pins'))) {
      const dot = f.indexOf('.');
      const sha = f.slice(0, dot), pid = Number(f.slice(dot + 1));
      if (alive(pid)) out.add(sha);
      else try { unlinkSync(join(this.dir, 'pins', f)); } catch { /* raced */ }
    }
    return out;
  }

  /** Entries on disk: name, size, last use. */
  private scan(): { bytes: number; entries: Array<{ sha: string; size: number; atime: number }> } {
    const entries: Array<{ sha: string; size: number; atime: number }> = [];
    let bytes = 0;
    for (const f of readdirSync(join(this.dir, 'shards'))) {
      if (!f.endsWith('.npy')) continue;
      try {
        const st = statSync(join(this.dir, 'shards', f));
        entries.push({ sha: f.slice(0, -4), size: st.size, atime: st.atimeMs });
        bytes += st.size;
      } catch { /* evicted by another process meanwhile */ }
    }
    return { bytes, entries };
  }

  /** Whether `bytes` more fit under the limit beside the entries pinned by any process (unpinned ones can be evicted). */
  fits(bytes: number): boolean {
    const { entries } = this.scan();
    const pinned = this.pinned();
    const held = entries.filter((e) => pinned.has(e.sha)).reduce((a, e) => a + e.size, 0);
    return held + bytes <= this.limitBytes;
  }

  /**
   * Evict least-recently-used unpinned entries until `need` more bytes (plus this process's downloads in flight) fit
   * under the limit, or nothing is left to evict. Each victim is removed under its lock, after a fresh look at the pins.
   */
  private makeRoom(need: number, self: string): void {
    const { bytes, entries } = this.scan();
    let used = bytes + this.reserved;
    if (used + need <= this.limitBytes) return;
    let pinned = this.pinned();
    // Temporary files of processes that died mid-download.
    for (const f of readdirSync(join(this.dir, 'tmp'))) {
      const pid = Number(f.split('.')[1]);
      if (!alive(pid)) try { unlinkSync(join(this.dir, 'tmp', f)); } catch { /* raced */ }
    }
    entries.sort((a, b) => a.atime - b.atime);
    for (const e of entries) {
      if (used + need <= this.limitBytes) break;
      if (e.sha === self || pinned.has(e.sha)) continue;
      const lock = join(this.dir, 'locks', `${e.sha}.lock`);
      let fd: number;
      try { fd = openSync(lock, 'wx'); } catch { continue; } // in use or being fetched: not a victim now
      try {
        writeSync(fd, String(process.pid));
        closeSync(fd);
        pinned = this.pinned();
        if (pinned.has(e.sha)) continue;
        unlinkSync(this.pathOf(e.sha));
        used -= e.size;
        this.stats.evictions++;
        this.verified.delete(e.sha);
      } catch { /* evicted by another process meanwhile */ } finally {
        try { unlinkSync(lock); } catch { /* gone */ }
      }
    }
  }

  /** Disk figures now, plus this process's counters. */
  usage(): CacheStats {
    const { bytes, entries } = this.scan();
    return { ...this.stats, bytes, files: entries.length };
  }
}
