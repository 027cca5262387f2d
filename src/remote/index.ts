// Remote stores: URL parsing, HTTP and S3 backends, retried transfers and the local shard cache. Depends on core only.
import { join } from 'node:path';
import { envSettings } from '../core/config.ts';
import { SlimfitError } from '../core/errors.ts';
import type { Backend } from './backend.ts';
import { REMOTE_DEFAULTS } from './defaults.ts';
import { httpBackend } from './http.ts';
import { RETRY_DEFAULTS, type RetryPolicy } from './retry.ts';
import { s3Backend } from './s3.ts';
import { parseRemote } from './url.ts';

export type { Backend, GetResult } from './backend.ts';
export { ShardCache, type CacheStats, type ShardCacheOptions } from './cache.ts';
export { REMOTE_DEFAULTS } from './defaults.ts';
export { RETRY_DEFAULTS, type RetryPolicy, TransferError, withRetries } from './retry.ts';
export { downloadFile, fetchText, uploadFile, type Expected } from './transfer.ts';
export { isRemote, joinKey, parseRemote, type RemoteLocation } from './url.ts';

/** Options for opening or writing a store by URL (all optional). */
export interface RemoteOptions {
  /** Cache folder for downloaded shards; default `<SLIMFIT_CACHE or the user cache folder>/remote`. */
  cacheDir?: string;
  /** Bytes the cache may take (least-recently-used shards are evicted); default SLIMFIT_CACHE_LIMIT or 10 GB. */
  cacheLimit?: number;
  /** S3 endpoint for S3-compatible servers (MinIO, Ceph, R2...; path-style addressing); default AWS_ENDPOINT_URL. */
  endpoint?: string;
  /** Retry budget and timeouts (see RETRY_DEFAULTS). */
  retry?: Partial<RetryPolicy>;
}

/** The keys RemoteOptions accepts (for option checks). */
export const REMOTE_OPTION_KEYS = ['cacheDir', 'cacheLimit', 'endpoint', 'retry'] as const;

/** RemoteOptions with every default applied. */
export interface ResolvedRemote { cacheDir: string; cacheLimit: number; endpoint?: string; retry: RetryPolicy }

/** Apply defaults (and check the values) of `o`. */
export function resolveRemoteOptions(o: RemoteOptions = {}): ResolvedRemote {
  const env = envSettings();
  const cacheLimit = o.cacheLimit ?? env.cacheLimit ?? REMOTE_DEFAULTS.cacheLimit;
  if (!(Number.isSafeInteger(cacheLimit) && cacheLimit > 0)) throw new SlimfitError(`option cacheLimit must be a positive whole number of bytes, got ${String(o.cacheLimit)}`);
  const retry = { ...RETRY_DEFAULTS, ...(o.retry ?? {}) };
  if (!(Number.isSafeInteger(retry.attempts) && retry.attempts >= 1)) throw new SlimfitError(`option retry.attempts must be a whole number >= 1, got ${String(retry.attempts)}`);
  for (const k of ['baseDelayMs', 'maxDelayMs', 'idleTimeoutMs'] as const) {
    if (!(Number.isFinite(retry[k]) && retry[k] >= 0)) throw new SlimfitError(`option retry.${k} must be a number of milliseconds >= 0, got ${String(retry[k])}`);
  }
  return { cacheDir: o.cacheDir ?? join(env.cacheDir, 'remote'), cacheLimit, endpoint: o.endpoint ?? env.s3Endpoint ?? undefined, retry };
}

/**
 * The backend for a store URL (http(s):// or s3://).
 *
 * @example
 * const b = openBackend('s3://bucket/mnist', { endpoint: 'http://127.0.0.1:4569' });
 */
export function openBackend(url: string, o: { endpoint?: string } = {}): Backend {
  const loc = parseRemote(url);
  if (loc.kind === 'http') return httpBackend(loc.url);
  return s3Backend(loc.bucket, loc.prefix, loc.url, { endpoint: o.endpoint ?? envSettings().s3Endpoint ?? undefined, region: envSettings().s3Region ?? undefined });
}
