// Parsers for numeric command-line flags (commander's argParser): each checks its value and, when it is not a number
// of the right kind, throws a UsageError (exit code 2) naming the flag, what it takes and what it got. `Number('abc')` is NaN and
// `Number('')` is 0, so a bare Number() would let a typo through as a silently different setting.
import type { Command } from 'commander';
import { UsageError } from '../core/errors.ts';
import { formatAugment, parseAugmentSpec } from '../loader/augment.ts';
import { parseBytes } from '../core/units.ts';
import type { RemoteOptions } from '../remote/index.ts';

function flagParser(flag: string, takes: string, ok: (n: number) => boolean): (v: string) => number {
  return (v: string): number => {
    const n = v.trim() === '' ? Number.NaN : Number(v);
    if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`${flag} must be ${takes}, got '${v}'`);
    return n;
  };
}

/** A whole number >= `min` (e.g. `--seed`: 0, `--batch`: 1). */
export function wholeFlag(flag: string, min: number): (v: string) => number {
  return flagParser(flag, `a whole number >= ${min}`, (n) => Number.isSafeInteger(n) && n >= min);
}

/** A number > 0 (e.g. `--lr`). */
export function positiveFlag(flag: string): (v: string) => number {
  return flagParser(flag, 'a number > 0', (n) => n > 0);
}

/** A number in (0, 1] (a factor that may only shrink, e.g. `--lr-decay`). */
export function factorFlag(flag: string): (v: string) => number {
  return flagParser(flag, 'a number above 0 and at most 1', (n) => n > 0 && n <= 1);
}

/** A number from 0 up to (not including) 1 (e.g. `--val-fraction`). */
export function fractionFlag(flag: string): (v: string) => number {
  return flagParser(flag, 'a number from 0 up to (not including) 1', (n) => n >= 0 && n < 1);
}

/** An `--augment` spec, checked now (a bad key or value exits 2 naming it) and passed on in its canonical form. */
export function augmentFlag(flag: string): (v: string) => string {
  return (v: string): string => formatAugment(parseAugmentSpec(v, flag));
}

/** The flags of a command that reads a store by URL: where the shard cache lives, its size, the S3 endpoint. */
export function addRemoteFlags(cmd: Command): Command {
  return cmd
    .option('--cache-dir <dir>', 'for a store URL: folder of the local shard cache (default $SLIMFIT_CACHE/remote, ~/.cache/slimfit/remote)')
    .option('--cache-limit <size>', 'for a store URL: bytes the shard cache may take, e.g. 20G (default $SLIMFIT_CACHE_LIMIT or 10G); least recently used shards are evicted')
    .option('--endpoint <url>', 'for an s3:// store: the endpoint of an S3-compatible server (MinIO, Ceph, R2...; default $AWS_ENDPOINT_URL)');
}

/** RemoteOptions from the flags added by {@link addRemoteFlags}. */
export function remoteFlags(o: { cacheDir?: string; cacheLimit?: string; endpoint?: string }): RemoteOptions | undefined {
  if (o.cacheDir === undefined && o.cacheLimit === undefined && o.endpoint === undefined) return undefined;
  let cacheLimit: number | undefined;
  if (o.cacheLimit !== undefined) {
    const n = parseBytes(o.cacheLimit);
    if (n === null) throw new UsageError(`--cache-limit must be a size such as 20G or 500MB, got '${o.cacheLimit}'`);
    cacheLimit = n;
  }
  if (o.endpoint !== undefined && !/^https?:\/\/[^/]/.test(o.endpoint)) throw new UsageError(`--endpoint must be an http:// or https:// URL, got '${o.endpoint}'`);
  return { cacheDir: o.cacheDir, cacheLimit, endpoint: o.endpoint };
}
