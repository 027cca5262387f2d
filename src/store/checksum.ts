// SHA-256 of a file, streamed (never the whole file in memory); hashed off this thread when the addon is built.
import { createReadStream } from 'node:fs';
import { createSha256 } from '../util/sha256.ts';

/** Hex SHA-256 of the file at `path`, read as a stream in 1 MB chunks. */
export async function sha256File(path: string): Promise<string> {
  const h = createSha256();
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) await h.update(chunk as Buffer);
  return h.digest();
}
