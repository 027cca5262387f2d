// Run under `mpirun -np N` by bench/mpi/bench.ts: the time of one MPI_Allreduce (mean) of FLOATS float32 values,
// after a barrier, median of REPS; rank 0 prints `allreduce-seconds=<median>`.
import { mpiWorld } from '../../src/core/mpi.ts';

const floats = Number(process.argv[2]), reps = Number(process.argv[3] ?? 30);
const w = mpiWorld();
if (!w) throw new Error('run this under mpirun');
const buf = new Float32Array(floats).fill(w.rank);
const times: number[] = [];
for (let i = 0; i < reps + 3; i++) {
  w.barrier();
  const t0 = performance.now();
  w.allreduce(buf, true);
  if (i >= 3) times.push((performance.now() - t0) / 1000);
}
times.sort((a, b) => a - b);
if (w.rank === 0) process.stdout.write(`allreduce-seconds=${times[Math.floor(times.length / 2)]}\n`);
