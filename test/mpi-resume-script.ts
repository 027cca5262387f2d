// Run by test/mpi.test.ts, alone or under mpirun: trainRun (what `slimfit train` runs) with an abort signal that goes
// off, on one chosen rank only, while batch STOP_AFTER of the first epoch trains, so the run stops after that batch
// through the same path a SIGTERM takes (signal.aborted, agreed between the ranks in the step's all-reduce) but at a
// batch chosen in advance instead of a moment.
// Usage: mpi-resume-script.ts STORE OUT [STOP_AFTER STOP_RANK | resume]. Prints `interrupted <json>` on rank 0.
import { mpiWorld, trainRun } from '../src/index.ts';

const [store, out, a, b] = process.argv.slice(2);
const world = mpiWorld();
const rank = world?.rank ?? 0, ranks = world?.size ?? 1;
const resume = a === 'resume';
const stopAfter = resume || a === undefined ? 0 : Number(a), stopRank = Number(b ?? 0);
const stop = new AbortController();
// The loop reads signal.aborted once before each epoch, then once before each step (the flag the step's all-reduce
// carries) and, in one process, once more after it: read number 1 + k (MPI) or 2k (one process) comes before step k.
let reads = 0;
const at = ranks > 1 ? 1 + stopAfter : 2 * stopAfter;
const signal = new Proxy(stop.signal, {
  get(t, p) {
    if (p === 'aborted' && stopAfter > 0 && rank === stopRank && ++reads === at) stop.abort();
    return Reflect.get(t, p, t);
  },
});
const r = await trainRun(resume ? undefined : store, {
  out, resume, model: 'mlp', epochs: 1, batchSize: 64, valFraction: 0, evaluateTest: false, progress: false, signal,
  log: rank === 0 ? (l) => process.stderr.write(`${l}\n`) : () => {},
});
if (rank === 0) process.stdout.write(`interrupted ${JSON.stringify(r.interrupted ?? null)}\n`);
