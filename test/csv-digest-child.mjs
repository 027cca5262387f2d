// Child-process helper: parse a text table with openCsv and print a digest of everything it produced, so a test can
// compare the native line parser against the JS one (run once with SLIMFIT_DISABLE=csv).
// Usage: node test/csv-digest-child.mjs PATH '{"xDtype":"uint8",...}'
import { createHash } from 'node:crypto';
import { register } from 'tsx/esm/api';
register();
const { openCsv } = await import('../src/formats/csv.ts');
const { csvAddon } = await import('../src/formats/csv-native.ts');
const [path, optsJson] = process.argv.slice(2);
const src = await openCsv(path, JSON.parse(optsJson ?? '{}'));
const hx = createHash('sha256'), hy = createHash('sha256');
let n = 0, batches = 0;
for await (const b of src.batches()) { hx.update(b.x); hy.update(b.y); n += b.n; batches++; }
process.stdout.write(JSON.stringify({ native: csvAddon() !== null, n, batches, x: hx.digest('hex'), y: hy.digest('hex'), skipped: src.skipped, warnings: src.warnings }));
