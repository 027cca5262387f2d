// Reading and writing a store in S3 (or an S3-compatible server: MinIO, Ceph, R2, s3rver) with the AWS SDK v3.
import { createReadStream } from 'node:fs';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Backend, GetResult } from './backend.ts';
import { TransferError, retryableStatus } from './retry.ts';

/** How to reach S3: endpoint for S3-compatible servers (then path-style addressing), region when none is configured. */
export interface S3Settings {
  endpoint?: string;
  region?: string;
}

type SdkError = { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number }; $fault?: string };

function transferError(url: string, e: unknown): TransferError {
  const err = e as SdkError;
  const status = err.$metadata?.httpStatusCode;
  if (err.name === 'AbortError' || err.name === 'TimeoutError') return new TransferError(`timed out`, url, undefined, true);
  if (err.name === 'CredentialsProviderError') {
    return new TransferError('no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance role)', url, undefined, false);
  }
  if (status !== undefined) {
    const what = err.name && err.name !== 'Unknown' && err.name !== 'UnknownError' ? ` ${err.name}` : '';
    return new TransferError(`HTTP ${status}${what}`, url, status, retryableStatus(status));
  }
  // No HTTP answer: a network error (reset, refused, cut body), retryable.
  return new TransferError(`${err.code ?? err.name ?? 'network error'}${err.message ? ` (${err.message})` : ''}`, url, undefined, true);
}

const isMissing = (e: unknown) => {
  const err = e as SdkError;
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata?.httpStatusCode === 404;
};

/**
 * A backend on S3: ranged GetObject, HeadObject, PutObject / multipart Upload (lib-storage) and DeleteObject. Credentials
 * come from the SDK's standard chain (environment, shared config files, SSO, instance roles). The SDK's own retries are
 * off: the caller's RetryPolicy decides.
 *
 * @example
 * const b = s3Backend('my-bucket', 'stores/mnist', 's3://my-bucket/stores/mnist', { endpoint: 'http://127.0.0.1:9000' });
 */
export function s3Backend(bucket: string, prefix: string, url: string, settings: S3Settings = {}): Backend {
  // The SDK is loaded on first use: commands on local stores and HTTP URLs never pay for it.
  let made: Promise<{ sdk: typeof import('@aws-sdk/client-s3'); client: S3Client }> | null = null;
  const sdk = () => (made ??= import('@aws-sdk/client-s3').then((m) => ({
    sdk: m,
    client: new m.S3Client({
      region: settings.region ?? 'us-east-1',
      ...(settings.endpoint ? { endpoint: settings.endpoint, forcePathStyle: true } : {}),
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    }),
  })));
  const keyOf = (key: string) => (prefix ? `${prefix}/${key}` : key);
  const urlOf = (key: string) => `${url}/${key}`;
  return {
    url, writable: true, urlOf,
    async get(key, from, signal): Promise<GetResult | null> {
      const u = urlOf(key);
      try {
        const { sdk: { GetObjectCommand }, client } = await sdk();
        const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keyOf(key), Range: from > 0 ? `bytes=${from}-` : undefined }), { abortSignal: signal });
        const m = r.ContentRange ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(r.ContentRange) : null;
        const start = m ? Number(m[1]) : 0;
        const total = m ? (m[3] === '*' ? undefined : Number(m[3])) : r.ContentLength;
        const body = r.Body as AsyncIterable<Uint8Array>;
        return {
          start, total,
          body: (async function* () {
            try { for await (const c of body) yield c; } catch (e) { throw transferError(u, e); }
          })(),
        };
      } catch (e) {
        if (isMissing(e)) return null;
        if ((e as SdkError).$metadata?.httpStatusCode === 416 && from > 0) throw new TransferError(`HTTP 416 (the object is shorter than expected)`, u, 416, true);
        throw transferError(u, e);
      }
    },
    async head(key, signal) {
      try {
        const { sdk: { HeadObjectCommand }, client } = await sdk();
        const r = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: keyOf(key) }), { abortSignal: signal });
        return r.ContentLength ?? 0;
      } catch (e) {
        if (isMissing(e)) return null;
        throw transferError(urlOf(key), e);
      }
    },
    async put(key, body, signal) {
      try {
        const { sdk: { PutObjectCommand }, client } = await sdk();
        if ('bytes' in body) {
          await client.send(new PutObjectCommand({ Bucket: bucket, Key: keyOf(key), Body: body.bytes }), { abortSignal: signal });
        } else {
          // Multipart above 8 MB per part (two parts in flight); small files go up in one PUT.
          const { Upload } = await import('@aws-sdk/lib-storage');
          const up = new Upload({ client, params: { Bucket: bucket, Key: keyOf(key), Body: createReadStream(body.path) }, partSize: 8 << 20, queueSize: 2, leavePartsOnError: false });
          const onAbort = () => { void up.abort(); };
          signal.addEventListener('abort', onAbort, { once: true });
          try { await up.done(); } finally { signal.removeEventListener('abort', onAbort); }
        }
      } catch (e) { throw transferError(urlOf(key), e); }
    },
    async remove(key, signal) {
      try {
        const { sdk: { DeleteObjectCommand }, client } = await sdk();
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: keyOf(key) }), { abortSignal: signal });
      } catch (e) {
        if (!isMissing(e)) throw transferError(urlOf(key), e);
      }
    },
    close() { void made?.then((m) => m.client.destroy(), () => {}); },
  };
}
