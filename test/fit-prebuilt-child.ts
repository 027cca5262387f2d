// Child of test/train-fit-prebuilt.test.ts: one fresh process per case, because the bug needs a model whose weights
// were created before anything in the process initialized the wasm backend (initBackend runs once per process).
// argv: mode (fit | evaluate | trainRun), store dir, batch size, [run dir]. Prints one JSON line.
import { buildModel, evaluate, fit, initBackend, trainRun } from '../src/train/index.ts';

const [mode, store, batch, out] = process.argv.slice(2);
const batchSize = Number(batch);
const shape = [28, 28, 1];
if (mode === 'fit') {
  // The README pattern: the model exists before fit switches the process to the wasm backend.
  const early = buildModel('mlp', { inputShape: shape, classes: 10, seed: 5 });
  const h1 = await fit(early, store, { epochs: 1, batchSize, progress: false, validationSplit: 0, shuffle: false });
  // The same seeded model built after the backend is up trains identically: migrated weights are the same numbers.
  await initBackend();
  const late = buildModel('mlp', { inputShape: shape, classes: 10, seed: 5 });
  const lines: string[] = [];
  const h2 = await fit(late, store, { epochs: 1, batchSize, progress: false, validationSplit: 0, shuffle: false, log: (l) => lines.push(l) });
  const w1 = early.getWeights().map((w) => Array.from(w.dataSync())), w2 = late.getWeights().map((w) => Array.from(w.dataSync()));
  // The second fit without `log` writes nothing more to stderr (the parent counts the note there).
  await fit(late, store, { epochs: 1, batchSize, progress: false, validationSplit: 0 });
  console.log(JSON.stringify({ loss: [h1.epochs[0].loss, h2.epochs[0].loss], sameWeights: JSON.stringify(w1) === JSON.stringify(w2), lines }));
} else if (mode === 'evaluate') {
  const early = buildModel('mlp', { inputShape: shape, classes: 10, seed: 5 });
  const r1 = await evaluate(early, store, { split: 'train', batchSize, progress: false });
  const late = buildModel('mlp', { inputShape: shape, classes: 10, seed: 5 });
  const r2 = await evaluate(late, store, { split: 'train', batchSize, progress: false });
  console.log(JSON.stringify({ loss: [r1.loss, r2.loss], samples: r1.samples }));
} else if (mode === 'trainRun') {
  const r = await trainRun(store, { model: 'mlp', epochs: 1, batchSize, progress: false, valFraction: 0, out, log: () => {} });
  console.log(JSON.stringify({ loss: [r.history[0].loss] }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
