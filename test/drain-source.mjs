// Child-process helper for memory tests: open a messy source, read every sample once, report count and peak RSS.
// Usage: node test/drain-source.mjs PATH '{"workers":1,...}' [PASSES]
// Runs the built package (dist/, made by `npm run build`; `npm test` builds it first), as users and the CLI do: its
// worker threads then run plain JavaScript, not the TypeScript sources through tsx (~35 MB more per thread).
import { setFlagsFromString } from 'node:v8';
// As `slimfit convert` runs its readers: V8's young generation kept at its start size (src/cli/convert.ts).
setFlagsFromString('--semi-space-growth-factor=1');
const { openMessySource } = await import('../dist/formats/messy.js');
const { peakRssBytes } = await import('../dist/core/rss.js');
const [path, optsJson, passesArg] = process.argv.slice(2);
const src = await openMessySource(path, JSON.parse(optsJson ?? '{}'));
if (!src) throw new Error(`not a messy source: ${path}`);
let n = 0;
let sum = 0;
for (let pass = 0; pass < Number(passesArg ?? 1); pass++) {
  for await (const b of src.batches()) {
    n += b.n;
    for (let i = 0; i < b.x.length; i += 4096) sum = (sum + b.x[i]) % 1000000007;
    b.release?.(); // done with this batch, as writeStore is: the source may reuse its memory
  }
}
await src.close();
process.stdout.write(`samples=${n} skipped=${src.skipped?.length ?? 0} sum=${sum}\n`);
process.stderr.write(`slimfit-peak-rss-bytes=${peakRssBytes()}\n`);
