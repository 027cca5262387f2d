// Reading a store over HTTP(S) with Node's global fetch (undici: keep-alive connections, Range requests).
import { SlimfitError } from '../core/errors.ts';
import type { Backend, GetResult } from './backend.ts';
import { TransferError, retryableStatus } from './retry.ts';
import { joinKey } from './url.ts';

/** A TransferError for a failed fetch() (network error, reset, abort by the idle timer). */
function networkError(url: string, e: unknown): TransferError {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  const why = err.name === 'AbortError' || err.name === 'TimeoutError' ? 'timed out' : err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
  return new TransferError(`${why}`, url, undefined, true);
}

/** Parse `bytes a-b/total` of a 206 answer. */
function contentRange(v: string | null): { start: number; total?: number } | null {
  const m = v ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v.trim()) : null;
  if (!m) return null;
  return { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

/**
 * A read-only backend over HTTP(S): GET with `Range: bytes=N-` to resume, HEAD for sizes.
 *
 * @example
 * const b = httpBackend('http://127.0.0.1:8080/mnist');
 * const r = await b.get('dataset.json', 0, AbortSignal.timeout(10_000));
 */
export function httpBackend(url: string): Backend {
  const refuse = (): never => {
    throw new SlimfitError(`cannot write to ${url}: plain HTTP(S) stores are read-only here`, {
      hint: 'write the store to a local folder or to s3://bucket/prefix, then serve that folder over HTTP',
    });
  };
  return {
    url, writable: false,
    urlOf: (key) => joinKey(url, key),
    async get(key, from, signal): Promise<GetResult | null> {
      const u = joinKey(url, key);
      let res: Response;
      try {
        res = await fetch(u, { signal, headers: from > 0 ? { range: `bytes=${from}-` } : {} });
      } catch (e) { throw networkError(u, e); }
      if (res.status === 404 || res.status === 410) { await res.body?.cancel().catch(() => {}); return null; }
      if (res.status === 416 && from > 0) { await res.body?.cancel().catch(() => {}); throw new TransferError(`HTTP 416 (the object is shorter than expected)`, u, 416, true); }
      if (res.status !== 200 && res.status !== 206) {
        await res.body?.cancel().catch(() => {});
        throw new TransferError(`HTTP ${res.status} ${res.statusText}`.trim(), u, res.status, retryableStatus(res.status));
      }
      if (!res.body) throw new TransferError(`HTTP ${res.status} with no body`, u, res.status, true);
      let start = 0, total: number | undefined;
      if (res.status === 206) {
        const cr = contentRange(res.headers.get('content-range'));
        if (!cr) { await res.body.cancel().catch(() => {}); throw new TransferError(`HTTP 206 without a valid Content-Range`, u, 206, true); }
        ({ start, total } = cr);
      } else {
        const len = res.headers.get('content-length');
        total = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
      }
      const body = res.body;
      return {
        start, total,
        body: (async function* () {
          try { for await (const c of body) yield c; } catch (e) { throw networkError(u, e); }
        })(),
      };
    },
    async head(key, signal) {
      const u = joinKey(url, key);
      let res: Response;
      try { res = await fetch(u, { method: 'HEAD', signal }); } catch (e) { throw networkError(u, e); }
      if (res.status === 404 || res.status === 410) return null;
      if (!res.ok) throw new TransferError(`HTTP ${res.status} ${res.statusText}`.trim(), u, res.status, retryableStatus(res.status));
      const len = res.headers.get('content-length');
      return len !== null ? Number(len) : 0;
    },
    put: async () => refuse(),
    remove: async () => refuse(),
    close() {},
  };
}
