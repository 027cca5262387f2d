// Parsing sizes people type: 64MB, 1.5GiB, 4096.

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
};

/** Bytes in a size like `64MB`, `512k`, `1.5GiB` or `4096`; null if it cannot be read. */
export function parseBytes(text: string): number | null {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return null;
  const unit = UNITS[m[2].toLowerCase()];
  if (unit === undefined) return null;
  const v = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(v) && v > 0 ? v : null;
}
