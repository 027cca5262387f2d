// A user's script run under `mpirun -np 2` by test/mpi.test.ts: fit() with matmulPrecision 'bf16' on every rank
// (`same`), or bf16 on rank 0 and float32 on rank 1 (`split`, a rank-dependent setting). Imports dist/ (faster to
// start than the sources through tsx). Prints its `train step:` line and `rank R/N <sha256 of the weights>`, or the error as the CLI would.
import { createHash } from 'node:crypto';
import { buildModel, fit, mpiWorld } from '../dist/index.js';

const [store, mode] = process.argv.slice(2);
const world = mpiWorld();
const rank = world?.rank ?? 0;
const model = buildModel('mlp', { inputShape: [28, 28, 1], classes: 10, seed: 1 + rank });
try {
  await fit(model, store, { epochs: 1, batchSize: 64, validate: false, progress: false, log: (l) => { if (l.startsWith('train step:')) process.stdout.write(`rank ${rank} ${l}\n`); }, matmulPrecision: mode === 'split' && rank === 1 ? 'float32' : 'bf16' });
  const h = createHash('sha256');
  for (const w of model.getWeights()) h.update(new Uint8Array(w.dataSync().buffer));
  process.stdout.write(`rank ${rank}/${world?.size ?? 1} ${h.digest('hex')}\n`);
} catch (e) {
  process.stderr.write(`slimfit: error: ${e.message}\n`);
  process.exitCode = 1;
}
