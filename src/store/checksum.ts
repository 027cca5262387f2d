// SHA-256 of a file, streamed (never the whole file in memory); hashed off this thread when the addon is built.
import { open } from 'node:fs/promises';
import { createSha256 } from '../core/sha256.ts';

const CHUNK = 1 << 20;

/** Hex SHA-256 of the file at `path`, read in 1 MB chunks into one reused buffer. */
export async function sha256File(path: string): Promise<string> {
  // One buffer, not a read stream: a stream hands out a fresh 1 MB buffer per chunk, and re-reading a 60 MB shard
  // left ~20 MB of them in RSS until the next GC (the peak of a whole conversion).
  const h = createSha256();
  const buf = Buffer.allocUnsafe(CHUNK);
  const fh = await open(path, 'r');
  try {
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      await h.update(buf.subarray(0, bytesRead)); // settled before the buffer is refilled
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest();
}
