// Child process for test/loader-rss.test.ts: EPOCHS shuffled epochs over a store (default 1), then prints its peak RSS (VmHWM).
// Runs the built package (dist/; `npm test` builds it first): its loader workers run plain JavaScript, as users' do.
const { createLoader, openDataset } = await import('../dist/loader/index.js');
const { peakRssBytes } = await import('../dist/core/rss.js');
const [dir, shuffle = 'global', reuse = '0', epochs = '1'] = process.argv.slice(2);
const ds = await openDataset(dir);
const loader = createLoader(ds.split('train'), { batchSize: 128, shuffle, workers: 1, normalize: { scale: 1 / 255, shift: 0 }, oneHot: 10, shuffleWindow: 8e6, reuseBuffers: reuse === '1' });
let n = 0, sum = 0;
for (let e = 0; e < Number(epochs); e++) for await (const b of loader) { n += b.n; sum += b.x[5]; }
await loader.close();
await ds.close();
process.stdout.write(`${JSON.stringify({ samples: n, check: sum })}\n`);
process.stderr.write(`slimfit-peak-rss-bytes=${peakRssBytes()}\n`);
