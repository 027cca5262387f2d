// Reading ahead into two reused buffers: the next chunk is filled (a file read, a gunzip run) while the caller
// looks at this one. Fresh buffers per chunk piled up as garbage ArrayBuffers until a full collection.

/**
 * Chunks that `fill` writes into `bufs[0]` and `bufs[1]` in turn (it returns the bytes written; 0 ends). A chunk is
 * valid until the next one is asked for. When the caller stops, the fill in flight is awaited first, so the caller
 * may close what it reads from right after.
 */
export async function* doubleBuffered<T extends Uint8Array>(bufs: [T, T], fill: (into: T) => Promise<number>): AsyncGenerator<T> {
  let k = 0;
  let next = fill(bufs[0]);
  try {
    for (;;) {
      const n = await next;
      if (n === 0) return;
      const cur = bufs[k];
      k ^= 1;
      next = fill(bufs[k]);
      yield cur.subarray(0, n) as T;
    }
  } finally {
    await next.catch(() => 0);
  }
}
