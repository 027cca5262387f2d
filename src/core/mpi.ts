// Data-parallel training over MPI: whether this process is one rank of an MPI job (the launcher's variables, read by
// config.ts), and the few collectives training needs, through the slimfit_mpi addon (Open MPI's MPI_Allreduce etc.).
// MPI is called from the main thread only. A process outside mpirun gets null from mpiWorld() and nothing changes.
import { envSettings, featureEnabled } from './config.ts';
import { SlimfitError } from './errors.ts';
import { addonStatus, whyOff } from './native.ts';

interface MpiAddon {
  init(): { rank: number; size: number; library: string };
  allreduce(buf: Float32Array | Float64Array, mean: boolean): void;
  bcast(buf: Float32Array | Float64Array, root: number): void;
  barrier(): void;
  finalize(): void;
  abort(code: number): void;
}

/** Floats per all-reduce call when several tensors are fused into buckets (16 MB of float32). */
export const BUCKET_FLOATS = 4 << 20;

/** Time spent in collectives since the world started (benchmarks and the run report read it). */
export interface MpiStats { allreduceCalls: number; allreduceSeconds: number; allreduceFloats: number }

/** One rank's view of the MPI job. */
export interface MpiWorld {
  rank: number;
  size: number;
  /** e.g. 'Open MPI v4.1.4'. */
  library: string;
  stats: MpiStats;
  /** Sum (mean = true: average) `buf` over all ranks, in place. */
  allreduce(buf: Float32Array | Float64Array, mean?: boolean): void;
  /**
   * Average several arrays over all ranks in place, fused into buckets of up to {@link BUCKET_FLOATS} floats (one
   * MPI_Allreduce per bucket instead of one per tensor).
   */
  allreduceMany(arrays: Float32Array[], mean?: boolean): void;
  /** Rank 0's contents of each array into every rank's (fused into buckets like allreduceMany). */
  broadcastMany(arrays: Float32Array[]): void;
  barrier(): void;
  /**
   * Every rank stops on the same error, agreed through a collective (e.g. the ranks' plans differ): MPI_Finalize then
   * runs at exit whatever the exit code, so each rank ends (and prints its error) before mpirun ends the job.
   */
  stopTogether(): void;
  /** True after stopTogether, until the next collective: the error about to end this rank is every rank's. */
  stoppedTogether(): boolean;
  /** End the whole job now (every rank), e.g. after an error on one rank. */
  abort(code?: number): never;
}

let world: MpiWorld | null | undefined;

/** Copy `arrays` through buckets: fill a bucket, run `op` on it, copy back; tensors larger than a bucket go alone. */
function bucketed(arrays: Float32Array[], op: (buf: Float32Array) => void): void {
  let bucket = new Float32Array(0);
  for (let i = 0; i < arrays.length;) {
    if (arrays[i].length >= BUCKET_FLOATS) { op(arrays[i]); i++; continue; }
    let j = i, n = 0;
    while (j < arrays.length && arrays[j].length < BUCKET_FLOATS && n + arrays[j].length <= BUCKET_FLOATS) n += arrays[j++].length;
    if (bucket.length < n) bucket = new Float32Array(n);
    const view = bucket.subarray(0, n);
    let o = 0;
    for (let k = i; k < j; k++) { view.set(arrays[k], o); o += arrays[k].length; }
    op(view);
    o = 0;
    for (let k = i; k < j; k++) { arrays[k].set(view.subarray(o, o + arrays[k].length)); o += arrays[k].length; }
    i = j;
  }
}

/** The MPI world if mpiWorld() has already started one in this process, else null (never starts MPI itself). */
export function startedMpiWorld(): MpiWorld | null {
  return world ?? null;
}

/**
 * This process's MPI world when an MPI launcher started it (MPI_Init on first call), else null. Under a launcher
 * without a usable slimfit_mpi addon it throws a SlimfitError naming what to install.
 *
 * @example
 * const w = mpiWorld();              // null outside mpirun
 * if (w) { const g = new Float32Array([w.rank]); w.allreduce(g, true); }
 */
export function mpiWorld(): MpiWorld | null {
  if (world !== undefined) return world;
  const launch = envSettings().mpi;
  if (!launch) return (world = null);
  const s = addonStatus('slimfit_mpi');
  const addon = s.module as MpiAddon | null;
  if (!addon) {
    const why = featureEnabled('mpi') ? whyOff(s) : 'it is turned off by SLIMFIT_DISABLE (mpi or native)';
    throw new SlimfitError(`this process runs under an MPI launcher (${launch.from}=${launch.rank}) but slimfit's MPI addon is not available: ${why}`, {
      hint: 'install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), then compile the addons: `npm run build:native` in a clone of slimfit, `node node_modules/slimfit/native/build.mjs --force` where it is installed (`slimfit doctor` then lists slimfit_mpi as active); or run without mpirun',
    });
  }
  let info: { rank: number; size: number; library: string };
  try {
    info = addon.init();
  } catch (e) {
    throw new SlimfitError(`MPI did not start: ${(e as Error).message}`, { hint: 'start slimfit with mpirun (as root: mpirun --allow-run-as-root); `mpirun -np 2 hostname` checks the MPI installation' });
  }
  if (launch.size !== null && info.size !== launch.size) {
    throw new SlimfitError(`MPI says the job has ${info.size} ranks but ${launch.sizeFrom} says ${launch.size}`, {
      hint: 'slimfit_mpi was built against another MPI than the mpirun that started it; rebuild it with `npm run build:native` where that MPI\'s mpicc is on PATH',
    });
  }
  const stats: MpiStats = { allreduceCalls: 0, allreduceSeconds: 0, allreduceFloats: 0 };
  const reduce = (buf: Float32Array | Float64Array, mean: boolean): void => {
    const t0 = performance.now();
    try {
      addon.allreduce(buf, mean);
    } catch (e) {
      throw new SlimfitError(`rank ${info.rank}: ${(e as Error).message}; another rank has probably stopped`, { hint: 'see the other ranks\' messages above; resume the run from its last checkpoint with --resume' });
    }
    stats.allreduceSeconds += (performance.now() - t0) / 1000;
    stats.allreduceCalls++;
    stats.allreduceFloats += buf.length;
  };
  let finalized = false, together = false;
  const w: MpiWorld = {
    rank: info.rank, size: info.size, library: info.library, stats,
    // a collective after an agreed stop means the program caught that error and went on: a later exit with an error
    // is this rank's own again (finalizing then would wait for ranks stuck in a collective)
    allreduce: (buf, mean = false) => { together = false; reduce(buf, mean); },
    allreduceMany: (arrays, mean = true) => { together = false; bucketed(arrays, (b) => reduce(b, mean)); },
    broadcastMany: (arrays) => { together = false; bucketed(arrays, (b) => addon.bcast(b, 0)); },
    barrier: () => { together = false; addon.barrier(); },
    stopTogether: () => { together = true; },
    stoppedTogether: () => together,
    abort: (code = 1) => {
      addon.abort(code);
      process.exit(code);
    },
  };
  // MPI_Finalize waits for every rank, so only a process that ends well calls it; one that fails exits without it, and
  // mpirun then ends the others ("exited without calling finalize"), which is how a rank's error stops the job. An
  // error every rank agreed on (stopTogether) finalizes too: every rank gets there.
  process.on('exit', (code) => {
    if ((code === 0 || together) && !finalized) { finalized = true; addon.finalize(); }
  });
  return (world = w);
}
