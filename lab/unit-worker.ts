// A child process of `runUnits` (lab/runs.ts): runs one unit per message with the section's runner and sends back its
// result as canonical JSON. Started with SLIMFIT_THREADS=1 so N jobs use N cores.
import { isSlimfitError } from '../src/core/errors.ts';
import { canonicalJson } from './runs.ts';
import { unitRunner } from './units.ts';

await (await import('./tf.ts')).initTf();
process.on('message', async (msg: { type: string; section?: string; spec?: unknown }) => {
  if (msg.type === 'exit') { process.disconnect(); return; }
  const t0 = performance.now();
  try {
    const result = await unitRunner(msg.section!)(msg.spec);
    process.send!({ type: 'done', result: canonicalJson(result), seconds: (performance.now() - t0) / 1000 });
  } catch (e) {
    process.send!({ type: 'error', error: isSlimfitError(e) ? (e as Error).message : (e as Error).stack ?? String(e), slimfit: isSlimfitError(e) });
  }
});
// the parent went away (killed, or done): nothing more to run
process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready' });
