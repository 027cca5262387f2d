// Whole-object transfers over a Backend: small reads (the manifest), shard downloads that resume a cut transfer by
// Range and are checked against their SHA-256 as they arrive, and uploads, all under one RetryPolicy.
import { open } from 'node:fs/promises';
import { SlimfitError } from '../core/errors.ts';
import { createSha256 } from '../core/sha256.ts';
import type { Backend, GetResult } from './backend.ts';
import { type RetryPolicy, TransferError, backoffMs, sleep, withRetries } from './retry.ts';

/** Calls `fn` with a signal that aborts after `idleMs` without `poke()`; the timer stops when fn settles. */
async function withIdleTimer<T>(idleMs: number, fn: (signal: AbortSignal, poke: () => void) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let timer = setTimeout(() => ac.abort(), idleMs);
  const poke = () => { clearTimeout(timer); timer = setTimeout(() => ac.abort(), idleMs); };
  try { return await fn(ac.signal, poke); } finally { clearTimeout(timer); }
}

/** The final error after the retry budget: one sentence with the URL and the last HTTP status or network error. */
function giveUp(e: TransferError, attempts: number, what: string): SlimfitError {
  return new SlimfitError(`${what} failed: ${e.message} (${attempts === 1 ? '1 attempt' : `${attempts} attempts`})`, {
    file: e.url, hint: e.status !== undefined && !e.retryable ? 'check the URL, the credentials and the server\'s permissions' : 'the server or the network kept failing; try again later or raise the retry budget',
  });
}

/**
 * Read a small object whole (e.g. `dataset.json`), retried; null when it does not exist.
 *
 * @example
 * const text = await fetchText(backend, 'dataset.json', RETRY_DEFAULTS);
 */
export async function fetchText(backend: Backend, key: string, policy: RetryPolicy, maxBytes = 64 << 20): Promise<string | null> {
  try {
    return await withRetries(policy, () => withIdleTimer(policy.idleTimeoutMs, async (signal, poke) => {
      const r = await backend.get(key, 0, signal);
      if (!r) return null;
      const chunks: Uint8Array[] = [];
      let n = 0;
      for await (const c of r.body) {
        poke();
        n += c.byteLength;
        if (n > maxBytes) throw new SlimfitError(`${backend.urlOf(key)} is larger than ${maxBytes} bytes`, { hint: 'this is not a slimfit manifest' });
        chunks.push(c);
      }
      if (r.total !== undefined && n !== r.total) throw new TransferError(`the body ended after ${n} of ${r.total} bytes`, backend.urlOf(key), undefined, true);
      return Buffer.concat(chunks).toString('utf8');
    }));
  } catch (e) {
    if (e instanceof TransferError) throw giveUp(e, e.attempts, 'reading');
    throw e;
  }
}

/** What a download must produce. */
export interface Expected { bytes: number; sha256: string }

/**
 * Download `key` into the file `dest` (created or truncated), resuming a cut transfer with a Range request from the
 * last byte written and hashing the bytes as they arrive. Ends only with exactly `expected.bytes` bytes whose SHA-256
 * matches; a mismatch (a flipped byte on the way) starts over. Failed attempts without new bytes count against the
 * budget; the final error names the URL and the last HTTP status.
 */
export async function downloadFile(backend: Backend, key: string, dest: string, expected: Expected, policy: RetryPolicy): Promise<void> {
  const url = backend.urlOf(key);
  const fh = await open(dest, 'w');
  try {
    let hash = createSha256();
    let pos = 0;
    let failures = 0, total = 0;
    const restart = async () => { pos = 0; hash = createSha256(); await fh.truncate(0); };
    for (;;) {
      const before = pos;
      try {
        await withIdleTimer(policy.idleTimeoutMs, async (signal, poke) => {
          const r: GetResult | null = await backend.get(key, pos, signal);
          if (!r) throw new TransferError(`HTTP 404 (the shard listed in the manifest is not on the server)`, url, 404, false);
          if (r.total !== undefined && r.total !== expected.bytes) {
            throw new TransferError(`the object is ${r.total} bytes but the manifest says ${expected.bytes}`, url, undefined, false);
          }
          if (r.start !== pos) {
            if (r.start !== 0) throw new TransferError(`asked for bytes from ${pos}, the server sent from ${r.start}`, url, undefined, true);
            await restart(); // the server ignored the Range: take the whole body
          }
          for await (const c of r.body) {
            poke();
            if (pos + c.byteLength > expected.bytes) throw new TransferError(`the server sent more than the manifest's ${expected.bytes} bytes`, url, undefined, false);
            await fh.write(c, 0, c.byteLength, pos);
            await hash.update(c);
            pos += c.byteLength;
          }
          if (pos < expected.bytes) throw new TransferError(`the connection ended after ${pos} of ${expected.bytes} bytes`, url, undefined, true);
        });
        const got = hash.digest();
        if (got === expected.sha256) return;
        await restart();
        throw new TransferError(`the downloaded bytes do not match the manifest's SHA-256 (got ${got})`, url, undefined, true);
      } catch (e) {
        if (!(e instanceof TransferError) || !e.retryable) {
          if (e instanceof TransferError) throw giveUp(e, total + 1, 'download');
          throw e;
        }
        total++;
        // Progress resets the count: a flaky link that cuts every transfer mid-way still finishes, but each cut
        // without a single new byte, and every checksum failure, uses up the budget.
        failures = pos > before ? 1 : failures + 1;
        if (failures >= policy.attempts || total >= policy.attempts * 8) throw giveUp(e, total, 'download');
        if (pos === before) await sleep(backoffMs(policy, failures));
      }
    }
  } finally {
    await fh.close();
  }
}

/**
 * Upload a local file or bytes to `key`, retried as a whole (multipart for large files, see the backend).
 *
 * @example
 * await uploadFile(backend, 'train/x-00000.npy', { path: '/tmp/store/train/x-00000.npy' }, RETRY_DEFAULTS);
 */
export async function uploadFile(backend: Backend, key: string, body: { path: string } | { bytes: Uint8Array }, policy: RetryPolicy): Promise<void> {
  try {
    // The idle timer does not apply to a multipart upload's long parts; a whole attempt gets 10 idle periods.
    await withRetries(policy, async () => {
      const ac = new AbortController();
      const t = setTimeout(() => ac.abort(), policy.idleTimeoutMs * 10);
      try { await backend.put(key, body, ac.signal); } finally { clearTimeout(t); }
    });
  } catch (e) {
    if (e instanceof TransferError) throw giveUp(e, e.attempts, 'upload');
    throw e;
  }
}
