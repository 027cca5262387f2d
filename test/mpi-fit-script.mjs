// A user's script run under `mpirun -np 2` by test/mpi.test.ts: fit() trains data-parallel by itself. Each rank builds
// its model with another seed, so identical weights at the end show rank 0's weights were broadcast and every step
// was the same. Prints `rank R/N <sha256 of the weights>`.
import { createHash } from 'node:crypto';
import { buildModel, fit, mpiWorld } from '../src/index.ts';

const world = mpiWorld();
const model = buildModel('mlp', { inputShape: [28, 28, 1], classes: 10, seed: 1 + (world?.rank ?? 0) });
await fit(model, process.argv[2], { epochs: 1, batchSize: 64, validate: false, progress: false, log: () => {} });
const h = createHash('sha256');
for (const w of model.getWeights()) h.update(new Uint8Array(w.dataSync().buffer));
process.stdout.write(`rank ${world?.rank ?? 0}/${world?.size ?? 1} ${h.digest('hex')}\n`);
