// Store locations given as URLs: http(s)://host/path/store and s3://bucket/prefix.
import { SlimfitError } from '../core/errors.ts';

/** A parsed store URL. `url` is the canonical form (no trailing slash) used in messages and cache keys. */
export type RemoteLocation =
  | { kind: 'http'; url: string }
  | { kind: 's3'; url: string; bucket: string; prefix: string };

/** True when `s` looks like a URL (`scheme://...`) rather than a local path. */
export function isRemote(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
}

/**
 * Parse a store URL: `http://`, `https://` or `s3://bucket/prefix`; any other scheme is a SlimfitError.
 *
 * @example
 * parseRemote('s3://my-bucket/mnist'); // { kind: 's3', bucket: 'my-bucket', prefix: 'mnist', url: 's3://my-bucket/mnist' }
 */
export function parseRemote(s: string): RemoteLocation {
  const scheme = s.slice(0, s.indexOf('://')).toLowerCase();
  if (scheme === 'http' || scheme === 'https') {
    let u: URL;
    try { u = new URL(s); } catch { throw new SlimfitError(`'${s}' is not a valid URL`, { hint: 'write it as http://host[:port]/path/to/store' }); }
    if (u.search || u.hash) throw new SlimfitError(`store URL ${s} has a query or fragment`, { hint: 'give the URL of the store folder (the one holding dataset.json), without ?... or #...' });
    return { kind: 'http', url: `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}` };
  }
  if (scheme === 's3') {
    const rest = s.slice(5);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new SlimfitError(`'${bucket}' in ${s} is not a valid S3 bucket name`, { hint: 'bucket names have 3-63 lowercase letters, digits, dots or hyphens: s3://bucket/prefix' });
    }
    return { kind: 's3', bucket, prefix, url: `s3://${bucket}${prefix ? `/${prefix}` : ''}` };
  }
  throw new SlimfitError(`unsupported URL scheme '${scheme}://' in ${s}`, { hint: 'stores can be local folders, http(s):// URLs or s3://bucket/prefix' });
}

/** The URL of `key` (a store-relative path such as `train/x-00000.npy`) under `base`. */
export function joinKey(base: string, key: string): string {
  return `${base}/${key.split('/').map(encodeURIComponent).join('/')}`;
}
