// Data-parallel training under `mpirun -np 2` (Open MPI; CI runs as root): the same weights as one process with the
// same global batch and seed, only rank 0 writes, a killed rank ends the job quickly, N=2 checkpoints resume with N=1,
// fit() in a user's script. Plus the pure parts (rank split of the global order, cursors, launcher variables).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, MNIST_DIR, needsAddon, needsMpi, py, ROOT, runCli, runMpi, tempDir } from '../dev/helpers.ts';
import { parseMpiEnv } from '../src/core/config.ts';
import { isSlimfitError } from '../src/core/errors.ts';
import { createPlan, type PlanConfig, rankPosition } from '../src/loader/plan.ts';
import { agreeOnPlan, bf16KernelsNote, globalCursor, perRankBatch, rankCursor, type RankPlan } from '../src/train/parallel.ts';
import type { MpiWorld } from '../src/core/mpi.ts';

/** Largest |a - b| over two runs' weights.bin (weights and Adam moments), which must have the same length. */
function maxAbsDiff(runA: string, runB: string): number {
  const a = new Float32Array(new Uint8Array(readFileSync(join(runA, 'model', 'weights.bin'))).buffer);
  const b = new Float32Array(new Uint8Array(readFileSync(join(runB, 'model', 'weights.bin'))).buffer);
  assert.equal(a.length, b.length, 'same number of saved floats');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * The measured differences are ~6e-7 (mlp, fused step) and ~1.2e-6 (cnn, trainOnBatch; not measured since the cnn has its fused step) after one epoch of 2048
 * samples: the two ranks' half-batch gradients are summed in another order than one GEMM over the whole batch.
 */
const TOLERANCE = 1e-5;

/** true when this CPU and build run bf16 matrix products, else why not (the bf16 training test skips with it). */
const HAS_BF16: true | string = await (async () => {
  if (needsAddon('slimfit_engine')) return 'no native engine';
  const { bf16Kernel } = await import('../src/engine/index.ts');
  try { bf16Kernel(); return true; } catch (e) { return (e as Error).message; }
})();

test('rankSplit batches: the ranks\' k-th batches together are the k-th global batch of one process, for any N', () => {
  for (const [n, b, N] of [[10, 2, 2], [103, 4, 3], [64, 8, 4], [7, 3, 2], [1000, 16, 5]]) {
    const one: PlanConfig = { n, mode: 'global', balanced: false, seed: 3, rank: 0, worldSize: 1, perRank: n, blockSamples: 1, windowSamples: 1 };
    const order = new Float64Array(n);
    createPlan(one).samples(0, 0, n, order);
    const perRank = Math.floor(n / N), G = b * N;
    const got: number[][] = [];
    for (let r = 0; r < N; r++) {
      const plan = createPlan({ ...one, rank: r, worldSize: N, perRank, rankBatch: b });
      const ids = new Float64Array(perRank);
      plan.samples(0, 0, perRank, ids);
      got.push([...ids]);
      for (let q = 1; q < perRank; q++) assert.ok(rankPosition(plan.config, q) > rankPosition(plan.config, q - 1), 'positions grow');
    }
    // Full global batches: exactly one process's batch k, rank by rank.
    const full = Math.floor(n / G);
    for (let k = 0; k < full; k++) {
      const merged = got.flatMap((ids) => ids.slice(k * b, (k + 1) * b));
      assert.deepEqual(merged, [...order.slice(k * G, (k + 1) * G)], `n=${n} b=${b} N=${N} batch ${k}`);
    }
    // The last, partial global batch: an equal share per rank of its first samples (n % N dropped, as with 'blocks').
    const tail = Math.floor((n - full * G) / N);
    const merged = got.flatMap((ids) => ids.slice(full * b, full * b + tail));
    assert.deepEqual(merged, [...order.slice(full * G, full * G + tail * N)], `n=${n} b=${b} N=${N} tail`);
  }
});

test('the global batch must split evenly; checkpoint cursors are global and resume with any N that divides them', () => {
  const w = (size: number) => ({ size, rank: 0 }) as MpiWorld;
  assert.equal(perRankBatch(null, 64), 64);
  assert.equal(perRankBatch(w(2), 64), 32);
  assert.throws(() => perRankBatch(w(2), 63), (e) => isSlimfitError(e) && /batch of 63 samples does not split evenly between the 2 MPI ranks/.test(e.message) && /62 or 64/.test(e.hint ?? ''));
  assert.throws(() => perRankBatch(w(4), 2), (e) => isSlimfitError(e) && /multiple of 4/.test(e.hint ?? ''));
  const g = globalCursor({ seed: 1, epoch: 2, position: 96, rank: 1, worldSize: 2 });
  assert.deepEqual(g, { seed: 1, epoch: 2, position: 192, rank: 0, worldSize: 1 });
  assert.deepEqual(rankCursor(g, 2, 3), { seed: 1, epoch: 2, position: 64, rank: 2, worldSize: 3 });
  assert.deepEqual(rankCursor(g, 0, 1), g);
  assert.throws(() => rankCursor(g, 0, 5), (e) => isSlimfitError(e) && /sample 192 .* between 5 ranks/.test(e.message));
});

/**
 * A stand-in world of `others.length + 1` ranks for the plan agreement: this process is `rank`, and the all-reduce adds
 * what the other ranks would send (their plans, gathered the way agreeOnPlan gathers them: its own call on each rank).
 */
function fakeWorld(rank: number, others: Record<number, RankPlan>): MpiWorld & { together: boolean } {
  const size = Object.keys(others).length + 1;
  const w = {
    rank, size, together: false,
    allreduce: (buf: Float32Array | Float64Array) => {
      for (const [r, p] of Object.entries(others)) {
        const inner = fakeWorld(Number(r), {});
        const slot = buf.length / size;
        inner.size = size;
        inner.allreduce = (b) => { for (let i = 0; i < slot; i++) buf[i + Number(r) * slot] += b[i + Number(r) * slot]; };
        try { agreeOnPlan(inner, p); } catch { /* its verdict is not ours */ }
      }
    },
    stopTogether: () => { w.together = true; },
  };
  return w as unknown as MpiWorld & { together: boolean };
}

test('ranks agree on their plan before the first step: a refusal, another precision, train step or batch count stops every rank with one sentence naming the ranks', () => {
  const bf16 = (over: Partial<RankPlan> = {}): RankPlan => ({ matmulPrecision: 'bf16', bf16Kernel: 'amx', step: 'fused Dense step', batchesPerEpoch: 16, ...over });
  const agreed = (own: RankPlan, others: Record<number, RankPlan>) => {
    const w = fakeWorld(0, others);
    try { return { plans: agreeOnPlan(w, own), error: null, together: w.together }; } catch (e) { return { plans: null, error: e as Error, together: w.together }; }
  };
  let r = agreed(bf16(), { 1: bf16(), 2: bf16({ bf16Kernel: 'avx512bf16' }) });
  assert.equal(r.error, null);
  assert.equal(r.together, false);
  assert.equal(bf16KernelsNote(r.plans!), 'AMX tiles on ranks 0 and 1, AVX512_BF16 on rank 2');
  r = agreed(bf16(), { 1: bf16({ refused: 'matmul precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16, and this one has neither' }), 2: bf16({ refused: 'x'.repeat(2000) }) });
  assert.ok(r.error && isSlimfitError(r.error) && r.together);
  assert.match(r.error.message, /^MPI ranks 1 and 2 of 3 cannot train as asked, so no rank trains \(rank 1: matmul precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16, and this one has neither\)\. fix those ranks .*--matmul-precision float32/);
  r = agreed(bf16(), { 1: { matmulPrecision: 'float32', step: 'fused Dense step', batchesPerEpoch: 16 }, 2: bf16() });
  assert.match(r.error?.message ?? '', /^the 3 MPI ranks were given different matmul precisions \(bf16 on ranks 0 and 2, float32 on rank 1\): .* so no rank trains\. give every rank the same --matmul-precision/);
  r = agreed(bf16({ matmulPrecision: 'float32', bf16Kernel: undefined }), { 1: bf16({ matmulPrecision: 'float32', bf16Kernel: undefined, step: 'TensorFlow.js trainOnBatch' }), 2: bf16({ matmulPrecision: 'float32', bf16Kernel: undefined }) });
  assert.match(r.error?.message ?? '', /different train steps \(fused Dense step on ranks 0 and 2, TensorFlow\.js trainOnBatch on rank 1\).*same SLIMFIT_DISABLE/);
  r = agreed(bf16(), { 1: bf16({ batchesPerEpoch: 15 }), 2: bf16() });
  assert.match(r.error?.message ?? '', /^the 3 MPI ranks' loaders have different numbers of batches per epoch \(16 on ranks 0 and 2, 15 on rank 1\)/);
  // trainRun's early check compares the precision alone (its loader does not exist yet)
  r = agreed({ matmulPrecision: 'bf16' }, { 1: { matmulPrecision: 'bf16' }, 2: { matmulPrecision: 'bf16' } });
  assert.equal(r.error, null);
});

test('MPI launcher variables: Open MPI, PMIx and PMI; malformed values are errors naming the variable', () => {
  assert.equal(parseMpiEnv({}), null);
  assert.deepEqual(parseMpiEnv({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '4', PMIX_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '' }), { rank: 1, size: 4, from: 'OMPI_COMM_WORLD_RANK', sizeFrom: 'OMPI_COMM_WORLD_SIZE', localSize: null });
  assert.deepEqual(parseMpiEnv({ PMIX_RANK: '3' }), { rank: 3, size: null, from: 'PMIX_RANK', sizeFrom: null, localSize: null });
  assert.deepEqual(parseMpiEnv({ PMI_RANK: '0', PMI_SIZE: '2', MPI_LOCALNRANKS: '2' }), { rank: 0, size: 2, from: 'PMI_RANK', sizeFrom: 'PMI_SIZE', localSize: 2 });
  assert.throws(() => parseMpiEnv({ OMPI_COMM_WORLD_RANK: 'x' }), (e) => isSlimfitError(e) && /OMPI_COMM_WORLD_RANK="x"/.test(e.message));
  assert.throws(() => parseMpiEnv({ PMI_RANK: '2', PMI_SIZE: '2' }), (e) => isSlimfitError(e) && /PMI_RANK=2 is not below PMI_SIZE=2/.test(e.message));
});

test('the fused Dense step split for all-reduce (gradients, reduce, then Adam) is bit-identical to the one-call step', { skip: needsAddon('slimfit_engine') }, async () => {
  const { initBackend, tf } = await import('../src/train/backend.ts');
  const { compileDefault } = await import('../src/train/loop.ts');
  const { buildModel } = await import('../src/train/models.ts');
  const { denseTrainStep, engineActive } = await import('../src/engine/index.ts');
  await initBackend();
  const n = 48, x = new Float32Array(n * 784).map((_, i) => ((i * 7919) % 255) / 255), y = new Float32Array(n * 10);
  for (let i = 0; i < n; i++) y[i * 10 + ((i * 3) % 10)] = 1;
  const weights: Float32Array[][] = [];
  let reduced = 0;
  for (const split of [false, true]) {
    const m = buildModel('mlp', { inputShape: [28, 28, 1], classes: 10, seed: 4 });
    compileDefault(m);
    // The reduce sees all 669,706 gradients in one buffer; doubling then halving them leaves them exactly as they were.
    const r = denseTrainStep(tf, m, engineActive(), split ? { reduce: (g) => { reduced = g.length; for (let i = 0; i < g.length; i++) g[i] = (g[i] * 2) / 2; } } : {});
    assert.ok(r.step, r.reason);
    for (let k = 0; k < 4; k++) assert.ok(r.step(x, y, n));
    weights.push(m.getWeights().map((w) => w.dataSync() as Float32Array));
    r.dispose();
    m.dispose();
  }
  assert.equal(reduced, 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
  weights[0].forEach((w, i) => assert.deepEqual(weights[1][i], w, `weight ${i}`));
});

describe('under mpirun -np 2', { skip: needsMpi() }, () => {
  const tmp = tempDir('slimfit-mpi-');
  const store = join(tmp.dir, 'store'), small = join(tmp.dir, 'small');
  const train = (data: string, out: string, model: string, extra: string[] = []) =>
    [BIN, 'train', data, '--model', model, '--epochs', '1', '--batch', '64', '--val-fraction', '0', '--no-test', '--out', out, ...extra];

  before(async () => {
    // Real MNIST digits: 1024 for the mlp, 256 for the cnn (sample counts that the global batch of 64 divides).
    py(`
import numpy as np, sys
d, out = sys.argv[1], sys.argv[2]
x = np.fromfile(d + '/train-images-idx3-ubyte', dtype=np.uint8, offset=16, count=1024*784).reshape(1024, 28, 28, 1)
y = np.fromfile(d + '/train-labels-idx1-ubyte', dtype=np.uint8, offset=8, count=1024)
np.save(out + '/x.npy', x); np.save(out + '/y.npy', y); np.save(out + '/xs.npy', x[:256]); np.save(out + '/ys.npy', y[:256])
`, [MNIST_DIR, tmp.dir]);
    for (const [dir, x, y] of [[store, 'x', 'y'], [small, 'xs', 'ys']]) {
      const r = await runCli(['convert', dir, '--x', join(tmp.dir, `${x}.npy`), '--y', join(tmp.dir, `${y}.npy`), '-q']);
      assert.equal(r.code, 0, r.stderr);
    }
  });
  after(() => tmp.cleanup());

  test('mlp: 2 ranks reach one process\'s weights; only rank 0 writes and prints; resume with N=1 from the N=2 checkpoint matches', async () => {
    const one = join(tmp.dir, 'mlp-1');
    const r1 = await runCli(train(store, one, 'mlp').slice(1));
    assert.equal(r1.code, 0, r1.stderr);
    // Each rank in its own working folder with a relative --out: anything rank 1 wrote would land in rank1/.
    const wd = [join(tmp.dir, 'rank0'), join(tmp.dir, 'rank1')];
    for (const d of wd) mkdirSync(d);
    const r2 = await runMpi(2, train(store, 'run', 'mlp'), { perRank: (r) => ['--wdir', wd[r]] });
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /batch 64 \(data-parallel on 2 MPI ranks \(Open MPI [^)]*\): 32 samples per rank per batch\)/);
    assert.match(r2.stderr, /train step: fused \(.*gradients averaged over 2 MPI ranks/);
    assert.equal((r2.stdout.match(/^final epoch 1:/gm) ?? []).length, 1, `one summary (rank 0's):\n${r2.stdout}`);
    assert.deepEqual(readdirSync(wd[1]), [], 'rank 1 wrote nothing');
    const two = join(wd[0], 'run');
    assert.ok(existsSync(join(two, 'report.md')) && existsSync(join(two, 'model', 'state.json')));
    assert.match(readFileSync(join(two, 'report.md'), 'utf8'), /data-parallel\*\*: 2 MPI ranks .* global batch 64 = 32 per rank, lr 0\.001/);
    const d = maxAbsDiff(one, two);
    assert.ok(d <= TOLERANCE, `max |w1 - w2| = ${d}`);
    const [l1, l2] = [one, two].map((o) => JSON.parse(readFileSync(join(o, 'log.jsonl'), 'utf8').trim()));
    assert.equal(l2.samples, l1.samples);
    assert.ok(Math.abs(l1.loss - l2.loss) < 1e-5 && Math.abs(l1.accuracy - l2.accuracy) < 1e-9, `loss ${l1.loss} vs ${l2.loss}, acc ${l1.accuracy} vs ${l2.accuracy}`);
    // The N=2 checkpoint's cursor is global: one process continues it exactly where one process would.
    assert.deepEqual(JSON.parse(readFileSync(join(two, 'model', 'state.json'), 'utf8')).cursor, { seed: 0, epoch: 1, position: 0, rank: 0, worldSize: 1 });
    for (const o of [one, two]) {
      const r = await runCli(['train', '--resume', o, '--epochs', '2']);
      assert.equal(r.code, 0, r.stderr);
    }
    const d2 = maxAbsDiff(one, two);
    assert.ok(d2 <= TOLERANCE, `after resuming both with N=1: max |w1 - w2| = ${d2}`);
  });

  test('mid-epoch checkpoints resume with another number of ranks: 2 -> 1 and 1 -> 2 end within the tolerance of the uninterrupted run, and the change is said', async () => {
    // A stop raised by rank 1 (or the one process) after batch 5 of 16, through the abort signal a SIGTERM aborts.
    const script = join(ROOT, 'test', 'mpi-resume-script.ts');
    const args = (out: string, ...rest: string[]) => ['--import', 'tsx', script, store, out, ...rest];
    const ref = join(tmp.dir, 'mid-ref'), a = join(tmp.dir, 'mid-2to1'), b = join(tmp.dir, 'mid-1to2');
    let r = await runCli([store, ref], { script });
    assert.equal(r.code, 0, r.stderr);
    const interrupted = (o: string) => {
      const st = JSON.parse(readFileSync(join(o, 'model', 'state.json'), 'utf8'));
      // 5 global batches of 64 consumed: the cursor is global (k x the global batch) and the epoch's sums cover them.
      assert.deepEqual(st.cursor, { seed: 0, epoch: 0, position: 320, rank: 0, worldSize: 1 }, o);
      assert.equal(st.loop.partial.n, 320, o);
      return st;
    };
    r = await runMpi(2, args(a, '5', '1'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /interrupted \{"epoch":1,"batchesDone":5,"samplesDone":320\}/);
    assert.equal(interrupted(a).ranks, 2);
    r = await runCli([store, a, 'resume'], { script });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /note: .*mid-2to1 was checkpointed by 2 MPI ranks and continues with one process: .* resume with mpirun -np 2/);
    r = await runCli([store, b, '5', '0'], { script });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(interrupted(b).ranks, undefined);
    r = await runMpi(2, args(b, 'resume'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /note: .*mid-1to2 was checkpointed by one process and continues with 2 MPI ranks: .* resume with no mpirun/);
    for (const o of [a, b]) {
      const d = maxAbsDiff(ref, o);
      assert.ok(d <= TOLERANCE, `${o}: max |w - w_uninterrupted| = ${d}`);
    }
  });

  test('cnn (fused conv step with averaged gradients): 2 ranks reach one process\'s weights', async () => {
    const one = join(tmp.dir, 'cnn-1'), two = join(tmp.dir, 'cnn-2');
    const r1 = await runCli(train(small, one, 'cnn').slice(1));
    assert.equal(r1.code, 0, r1.stderr);
    const r2 = await runMpi(2, train(small, two, 'cnn'));
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /train step: fused \(.*gradients averaged over 2 MPI ranks/);
    const d = maxAbsDiff(one, two);
    assert.ok(d <= TOLERANCE, `max |w1 - w2| = ${d}`);
  });

  test('a killed rank ends the job with a clear message in under 30 s (no hang)', async () => {
    let killedAt = 0;
    const r = await runMpi(2, train(store, join(tmp.dir, 'killed'), 'mlp', ['--epochs', '200']), {
      timeoutMs: 120_000,
      onStderr: (stderr, mpirunPid) => {
        if (killedAt || !/epoch 1\/200: loss/.test(stderr)) return;
        // rank 1: the child of mpirun whose environment says OMPI_COMM_WORLD_RANK=1
        for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
          try {
            const ppid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
            if (ppid !== mpirunPid || !readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes('OMPI_COMM_WORLD_RANK=1')) continue;
            process.kill(Number(pid), 'SIGKILL');
            killedAt = performance.now();
          } catch { /* gone or not ours */ }
        }
      },
    });
    assert.ok(killedAt > 0, `rank 1 was found and killed:\n${r.stderr}`);
    const after = (performance.now() - killedAt) / 1000;
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /process rank 1 .* exited on signal 9 \(Killed\)/);
    assert.ok(after < 30, `the job ended ${after.toFixed(1)} s after the kill`);
  });

  test('bf16: a rank that cannot (the engine off on rank 1 only) stops every rank with the same error within seconds, before the run folder is written', async () => {
    const out = join(tmp.dir, 'bf16-refused');
    const r = await runMpi(2, train(small, out, 'mlp', ['--matmul-precision', 'bf16']), { perRank: (rank) => (rank === 1 ? ['-x', 'SLIMFIT_DISABLE=engine'] : []), timeoutMs: 60_000 });
    assert.notEqual(r.code, 0);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('slimfit: error:'));
    assert.equal(lines.length, 2, `one error line per rank:\n${r.stderr}`);
    assert.equal(lines[0], lines[1], 'the same error on both ranks');
    // rank 0 refuses as well on a CPU without bf16 instructions
    const ranks = HAS_BF16 === true ? 'rank 1' : 'ranks 0 and 1';
    assert.match(lines[0], new RegExp(`^slimfit: error: MPI ${ranks} of 2 cannot train as asked, so no rank trains \\(rank \\d: matmul precision bf16 needs .*\\)\\. fix those ranks .*--matmul-precision float32\\)?$`));
    assert.ok(!existsSync(out), 'no run folder');
    assert.ok(r.seconds < 30, `ended after ${r.seconds.toFixed(1)} s`);
  });

  test('bf16 in fit(): ranks given different precisions stop together; agreeing ranks train in bf16 and end with identical weights', { skip: HAS_BF16 === true ? false : HAS_BF16 }, async () => {
    const script = join(ROOT, 'test', 'mpi-bf16-script.mjs');
    const split = await runMpi(2, [script, small, 'split'], { timeoutMs: 60_000 });
    assert.notEqual(split.code, 0);
    const lines = split.stderr.split('\n').filter((l) => l.startsWith('slimfit: error:'));
    assert.equal(lines.length, 2, split.stderr);
    assert.equal(lines[0], lines[1]);
    assert.match(lines[0], /the 2 MPI ranks were given different matmul precisions \(bf16 on rank 0, float32 on rank 1\): averaging their gradients would mix two computations, so no rank trains\. give every rank the same --matmul-precision/);
    assert.doesNotMatch(split.stdout, /^rank \d\/2 /m, 'no rank trained');
    const same = await runMpi(2, [script, small, 'same'], { timeoutMs: 60_000 });
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /^rank 0 train step: fused \(.*gradients averaged over 2 MPI ranks, then Adam; matmul precision bf16 \(opt-in/m);
    const digests = same.stdout.split('\n').filter((l) => /^rank \d\/2 /.test(l)).sort().map((l) => l.split(' '));
    assert.deepEqual(digests.map((d) => d[1]), ['0/2', '1/2'], same.stdout);
    assert.equal(digests[0][2], digests[1][2], 'same weights on both ranks');
  });

  test('fit() in a user\'s script: every rank ends with identical weights; without the MPI addon, a clear error', async () => {
    const r = await runMpi(2, ['--import', 'tsx', join(ROOT, 'test', 'mpi-fit-script.mjs'), store]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('rank ')).sort();
    assert.equal(lines.length, 2, r.stdout);
    const [a, b] = lines.map((l) => l.split(' '));
    assert.deepEqual([a[1], b[1]], ['0/2', '1/2']);
    assert.equal(a[2], b[2], 'same weights digest on both ranks');
    const off = await runMpi(2, train(store, join(tmp.dir, 'off'), 'mlp'), { env: { SLIMFIT_DISABLE: 'mpi' } });
    assert.notEqual(off.code, 0);
    assert.match(off.stderr, /slimfit: error: this process runs under an MPI launcher \(OMPI_COMM_WORLD_RANK=\d\) but slimfit's MPI addon is not available: it is turned off by SLIMFIT_DISABLE.*apt-get install openmpi-bin libopenmpi-dev.*npm run build:native/);
  });
});
