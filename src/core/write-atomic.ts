// Writing a whole small file so readers never see half of it: a temporary file beside it, renamed into place.
import { rename, writeFile } from 'node:fs/promises';

/** Write `data` to `path` through a temporary file renamed into place. */
export async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}
