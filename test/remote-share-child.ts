// Child of test/remote.test.ts: one epoch from a store URL through a shared cache folder; prints the batches' digest.
import { createHash } from 'node:crypto';
import { createLoader, openDataset } from '../src/loader/index.ts';

const [url, cacheDir, limit, opts] = process.argv.slice(2);
const ds = await openDataset(url, { remote: { cacheDir, cacheLimit: Number(limit) } });
const loader = createLoader(ds.split('train'), JSON.parse(opts));
const h = createHash('sha256');
for await (const b of loader) {
  h.update(new Uint8Array(b.x.buffer, b.x.byteOffset, b.x.byteLength));
  h.update(new Uint8Array(b.y.buffer, b.y.byteOffset, b.y.byteLength));
}
await loader.close();
await ds.close();
process.stdout.write(`${h.digest('hex')}\n`);
