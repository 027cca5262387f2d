// A short identity of a store's contents: what a training run records so that resuming it on a rebuilt store is noticed.
import { createHash } from 'node:crypto';
import type { Manifest } from './manifest.ts';

/** SHA-256 over the store's fields, class names and every shard's checksum, split by split (manifest order). */
export function manifestFingerprint(m: Manifest): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ fields: m.fields, classNames: m.classNames ?? null }));
  for (const [name, s] of Object.entries(m.splits)) {
    h.update(`\n${name}`);
    for (const sh of s.shards) h.update(`\n${sh.x.sha256} ${sh.y.sha256}`);
  }
  return h.digest('hex');
}
