// Per-channel value counts of uint8 samples: what the store's statistics need from image data. Shared by the
// statistics accumulator and the image decode workers (which count off the main thread).

const lanes = new Uint32Array(4 * 256); // per-call counts (a call covers far fewer than 2^32 bytes)

/** Add the value counts of `bytes` (channels interleaved, `c` per pixel) into `hist` (channel k's value v at k*256+v). */
export function countBytes(bytes: Uint8Array, c: number, hist: Float64Array): void {
  if (c === 1) {
    // Four interleaved lanes: runs of one value (zeros in MNIST) would otherwise serialise on one counter.
    lanes.fill(0);
    const n4 = bytes.length & ~3;
    let i = 0;
    for (; i < n4; i += 4) { lanes[bytes[i]]++; lanes[256 + bytes[i + 1]]++; lanes[512 + bytes[i + 2]]++; lanes[768 + bytes[i + 3]]++; }
    for (; i < bytes.length; i++) lanes[bytes[i]]++;
    for (let v = 0; v < 256; v++) hist[v] += lanes[v] + lanes[256 + v] + lanes[512 + v] + lanes[768 + v];
  } else for (let i = 0; i < bytes.length; i++) hist[(i % c) * 256 + bytes[i]]++;
}
