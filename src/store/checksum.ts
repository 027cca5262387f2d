// SHA-256 of a file, streamed (never the whole file in memory; hashed off this thread when the addon is built), and the
// once-per-process check of a shard against its manifest that readers of a store run before using its bytes.
import { open, stat } from 'node:fs/promises';
import { relative } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import { createSha256 } from '../core/sha256.ts';

const CHUNK = 1 << 20;

/**
 * Read buffers of finished hashes, handed to the next one: a fresh 1 MB buffer per file lingered until a full
 * collection, so checking a store's shards one after another raised peak RSS with the number of shards.
 */
const spare: Buffer[] = [];

/** Hex SHA-256 of the file at `path`, read in 1 MB chunks into one reused buffer. */
export async function sha256File(path: string): Promise<string> {
  // One buffer, not a read stream: a stream hands out a fresh 1 MB buffer per chunk, and re-reading a 60 MB shard
  // left ~20 MB of them in RSS until the next GC (the peak of a whole conversion).
  const h = createSha256();
  const buf = spare.pop() ?? Buffer.allocUnsafe(CHUNK);
  const fh = await open(path, 'r').catch((e) => { spare.push(buf); throw e; });
  try {
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      await h.update(buf.subarray(0, bytesRead)); // settled before the buffer is refilled
      pos += bytesRead;
    }
  } finally {
    await fh.close();
    spare.push(buf);
  }
  return h.digest();
}

/** Shards checked (or being checked) by this process (path, expected digest, file identity), so each passing shard is hashed once whoever opens it. */
const checked = new Map<string, Promise<void>>();

/**
 * Check once per process that the shard at `path` has the size and SHA-256 its manifest records (`store` = the store
 * folder, for the advice). A mismatch is a SlimfitError naming the shard; later calls return the same pass, or check a
 * shard that failed again.
 */
export async function checkShardOnce(path: string, expected: { sha256: string; bytes: number }, store: string): Promise<void> {
  const name = relative(store, path);
  const hint = `the store is damaged: run \`slimfit verify ${store}\` to list every bad shard and re-run \`slimfit convert\``;
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') throw new SlimfitError(`shard ${name} is missing`, { file: path, hint });
    throw new SlimfitError(`cannot read shard ${name} to check it (${e.code ?? e.message})`, { file: path, hint });
  });
  // The file's identity is part of the key: a shard replaced since it was checked (a new store written over the old
  // one in this process) is checked again, not taken on the old pass.
  const key = `${path}\0${expected.sha256}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  let p = checked.get(key);
  if (!p) {
    p = (async () => {
      if (st.size !== expected.bytes) throw new SlimfitError(`shard ${name} is ${st.size} bytes but the manifest says ${expected.bytes}`, { file: path, hint });
      return sha256File(path);
    })().then((got) => {
      if (got !== expected.sha256) {
        throw new SlimfitError(`shard ${name} does not match its SHA-256 in the manifest (it is ${got}, the manifest says ${expected.sha256})`, {
          file: path, hint: `${hint} (--no-verify skips this check)`,
        });
      }
    }, (e: NodeJS.ErrnoException) => {
      if (e instanceof SlimfitError) throw e;
      throw new SlimfitError(`cannot read shard ${name} to check it (${e.code ?? e.message})`, { file: path, hint });
    });
    checked.set(key, p);
    // Only a pass is remembered: a failure (a transient EMFILE/EIO, or a shard repaired since) is checked afresh next
    // time. The promise returned still rejects; this branch only forgets it (and so handles no rejection itself).
    p.catch(() => { if (checked.get(key) === p) checked.delete(key); });
  }
  return p;
}
