// Incremental SHA-256 whose updates run off the calling thread when the optional addon is built
// (src/store/native/sha256.c, node's own OpenSSL on libuv's pool); node:crypto on this thread otherwise.
import { createHash } from 'node:crypto';
import { loadAddon } from './native.ts';

interface Sha256Addon {
  create(): object;
  update(h: object, bytes: Uint8Array): Promise<void>;
  digest(h: object): string;
}

/** An incremental SHA-256. Call update() again only after the previous one settled; bytes must not change until then. */
export interface Sha256 {
  /** Add bytes (hashed on libuv's pool when `offThread`). */
  update(bytes: Uint8Array): Promise<void>;
  /** The hex digest of everything added (call once, after the last update settled). */
  digest(): string;
  /** Whether updates run off this thread. */
  readonly offThread: boolean;
}

/** A new SHA-256 hasher (SLIMFIT_DISABLE=sha256 forces node:crypto). */
export function createSha256(): Sha256 {
  const addon = loadAddon<Sha256Addon>('slimfit_sha256');
  if (addon) {
    const h = addon.create();
    return { offThread: true, update: (bytes) => addon.update(h, bytes), digest: () => addon.digest(h) };
  }
  const h = createHash('sha256');
  return { offThread: false, update: async (bytes) => { h.update(bytes); }, digest: () => h.digest('hex') };
}
