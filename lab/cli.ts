// `npm run lab -- speed|swallow|chaos|gupta2015|fp8|int8|verify-formats|report`: the precision lab (how many bits does learning need?).
import type { Command } from 'commander';
import { SlimfitError, UsageError } from '../src/core/errors.ts';

interface Common { quick?: boolean; out: string; jobs?: number; budget?: number; fresh?: boolean; runs?: string }

function intList(s: string): number[] {
  const v = s.split(',').map((x) => Number(x.trim()));
  if (v.some((x) => !Number.isInteger(x) || x < 1 || x > 15)) throw new SlimfitError(`--fl expects comma-separated integers in 1..15, got "${s}"`);
  return v;
}

function netList(s: string): ('mlp' | 'cnn')[] {
  const v = s.split(',').map((x) => x.trim());
  if (!v.length || v.some((x) => x !== 'mlp' && x !== 'cnn')) throw new SlimfitError(`--net expects mlp, cnn or mlp,cnn, got "${s}"`);
  return v as ('mlp' | 'cnn')[];
}

function positiveInt(s: string): number {
  const v = Number(s);
  if (!Number.isInteger(v) || v < 1) throw new SlimfitError(`expected a positive integer, got "${s}"`);
  return v;
}

function nonNegativeInt(s: string): number {
  const v = Number(s);
  if (!Number.isInteger(v) || v < 0) throw new UsageError(`--jobs expects a whole number (0 = in this process), got "${s}"`);
  return v;
}

function positiveNumber(s: string): number {
  const v = Number(s);
  if (!Number.isFinite(v) || v <= 0) throw new UsageError(`expected a positive number of minutes, got "${s}"`);
  return v;
}

/** Options of the sections that keep their runs in the run store (lab/runs.ts). */
function runOptions(c: Command): Command {
  return c.option('--jobs <n>', 'runs at once, each in a child process with the engine at 1 thread (default 1; use the number of cores; 0 = in this process, for debugging)', nonNegativeInt)
    .option('--budget <minutes>', 'start no new run after this many minutes; running ones finish, then exit 75 if runs are missing', positiveNumber)
    .option('--fresh', 'ignore (and overwrite) the recorded runs of this configuration')
    .option('--runs <dir>', 'run store folder (default <out>/precision/runs)');
}

/** The run control of a command's options (the budget's clock starts now). */
async function control(o: Common): Promise<import('./runs.ts').RunControl> {
  return { jobs: o.jobs, fresh: !!o.fresh, runsDir: o.runs, deadline: o.budget === undefined ? undefined : Date.now() + o.budget * 60_000 };
}

/** Exit code 75 (EXIT_INCOMPLETE) when a section stopped with runs missing. */
async function finishStatus(): Promise<boolean> {
  const { SECTION_STATUS } = await import('./common.ts');
  const { EXIT_INCOMPLETE } = await import('./runs.ts');
  const missing = SECTION_STATUS.filter((s) => s.done < s.total);
  if (missing.length) process.exitCode = EXIT_INCOMPLETE;
  return missing.length === 0;
}

async function start(): Promise<void> {
  const { initTf } = await import('./tf.ts');
  process.stderr.write(`${await initTf()}\n`);
}

async function done(out: string): Promise<void> {
  const { assemble } = await import('./report.ts');
  process.stdout.write(`report: ${await assemble(out)}\n`);
}

/** Register `npm run lab -- speed|swallow|chaos|gupta2015|report`. */
export function register(program: Command): void {
  const lab = program;
  const common = (c: Command) => c.option('--quick', 'small subset and short runs (minutes)').option('--out <dir>', 'report folder', 'reports');

  runOptions(common(lab.command('gupta2015').description('Gupta et al. 2015: MNIST 784-1000-1000-10 and a LeNet-like CNN in 16-bit fixed point, round-to-nearest vs stochastic vs float32, n seeds per cell'))
    .option('--tiny', 'a narrow network on 2000 images (seconds per run; for tests, not the paper\'s network)')
    .option('--fl <list>', 'fraction lengths of the MLP cells, e.g. 8,14 (default 8,10,12,14; 8,14 with --quick)', intList)
    .option('--net <list>', 'networks to run: mlp, cnn or mlp,cnn (default both)', netList)
    .option('--cnn-fl <list>', 'fraction lengths of the CNN cells (default 10,14; --tiny: 14)', intList)
    .option('--epochs <n>', 'epochs per run', positiveInt)
    .option('--seeds <n>', 'seeds per cell (default 3 with --quick/--tiny, 5 in full mode)', positiveInt)
    .option('--no-float', 'skip the float32 baseline')
    .option('--no-mean', 'skip the batch-mean-loss cells (the artifact)')
    .option('--no-dynamic', 'skip the dynamic fixed point cells'))
    .action(async (o: Common & { tiny?: boolean; fl?: number[]; net?: ('mlp' | 'cnn')[]; cnnFl?: number[]; epochs?: number; seeds?: number; float: boolean; mean: boolean; dynamic: boolean }) => {
      await start();
      const { labGupta } = await import('./gupta.ts');
      const { summarize } = await import('./stats.ts');
      const cells = await labGupta({ quick: !!o.quick, size: o.tiny ? 'tiny' : o.quick ? 'quick' : 'full', out: o.out, fl: o.fl, epochs: o.epochs, seeds: o.seeds, noFloat: !o.float, noMean: !o.mean, noDynamic: !o.dynamic, nets: o.net, cnnFl: o.cnnFl, run: await control(o) });
      if (!await finishStatus()) return;
      for (const c of cells!) {
        const e = summarize(c.testError), s = summarize(c.saturated);
        process.stdout.write(`gupta2015\t${c.label}\tloss=${c.loss}\tn=${e.n}\ttest_error_mean=${e.mean.toFixed(4)}\ttest_error_sd=${(e.sd || 0).toFixed(4)}\tsaturated_mean=${s.mean.toFixed(5)}\tsaturated_max=${Math.max(...c.saturated).toFixed(5)}\terrors=${c.testError.map((v) => v.toFixed(4)).join(',')}\n`);
      }
      await done(o.out);
    });

  lab.command('verify-formats').description('fp16/bf16 rounding bit for bit against numpy: a seeded sample, or all 2^32 float32 patterns')
    .option('--exhaustive', 'check all 2^32 float32 patterns (minutes; not for CI)')
    .option('--sample <n>', 'patterns in the sampled check', positiveInt)
    .action(async (o: { exhaustive?: boolean; sample?: number }) => {
      const { verifyFormats } = await import('./verify.ts');
      const { mkdtempSync, rmSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      const tmp = mkdtempSync(join(tmpdir(), 'slimfit-verify-'));
      const t0 = performance.now();
      try {
        const res = await verifyFormats({ exhaustive: !!o.exhaustive, n: o.sample, tmp, log: (s) => process.stderr.write(s + '\n') });
        for (const r of res) {
          process.stdout.write(`verify\t${r.check}\tpatterns=${r.patterns}\tnan=${r.nans}\tmismatches=${r.mismatches}\n`);
          for (const e of r.examples) process.stdout.write(`  ${e}\n`);
        }
        const bad = res.reduce((s, r) => s + r.mismatches, 0);
        process.stdout.write(`verify-formats: ${o.exhaustive ? 'all 2^32 float32 patterns' : 'sampled'}, ${bad} mismatches, ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
        if (bad) throw new SlimfitError(`verify-formats: ${bad} mismatches against numpy (listed above)`);
      } finally { rmSync(tmp, { recursive: true, force: true }); }
    });

  runOptions(common(lab.command('swallow').description('guess 2: are small updates rounded away? lost-update-mass meter over optimizers x rounding x formats on MNIST, remedies, loss scaling, and a deep linear network\'s plateau; n seeds per row'))
    .option('--seeds <n>', 'seeds per row (default 3 with --quick/--tiny, 5 in full mode)', positiveInt)
    .option('--tiny', 'tiny networks and few steps (for tests; not the experiment)')
    .option('--parts <list>', 'only these parts: toy,grid,remedies,scaling,plateau (default all)'))
    .action(async (o: Common & { seeds?: number; tiny?: boolean; parts?: string }) => {
      const { labSwallow, SWALLOW_PARTS } = await import('./swallow.ts');
      const parts = o.parts?.split(',').map((x) => x.trim()).filter(Boolean);
      const bad = parts?.filter((x) => !(SWALLOW_PARTS as readonly string[]).includes(x));
      if (bad?.length) throw new UsageError(`--parts: unknown part "${bad[0]}"; choose from ${SWALLOW_PARTS.join(', ')}`);
      await start();
      const d = await labSwallow({ quick: !!o.quick || !!o.tiny, size: o.tiny ? 'tiny' : o.quick ? 'quick' : 'full', out: o.out, seeds: o.seeds, parts: parts as typeof SWALLOW_PARTS[number][] | undefined, run: await control(o) });
      if (!await finishStatus() || !d) return;
      const { summarize } = await import('./stats.ts');
      for (const c of d.cells ?? []) { const a = summarize(c.accs), l = summarize(c.lost); process.stdout.write(`swallow\t${c.opt}\t${c.format}\t${c.rounding}\tn=${a.n}\tacc_mean=${a.mean.toFixed(4)}\tlost_mean=${l.mean.toExponential(3)}\n`); }
      for (const c of d.plateau?.cells ?? []) process.stdout.write(`plateau\tinit=${c.init}\t${c.recipe}\tescapes=${c.escapes.map((e) => e ?? 'never').join(',')}\tlost=${c.lostPlateau.map((v) => v.toExponential(2)).join(',')}\n`);
      await done(o.out);
    });

  runOptions(common(lab.command('chaos').description('guess 3: one-ulp twins per layer with fitted Lyapunov exponents, a null twin, and noise injected into early/middle/late layers'))
    .option('--tiny', 'a narrow network for 100 steps (for tests)')
    .option('--twins <n>', 'twins per perturbed layer (default 3 with --quick/--tiny, 5 in full mode)', positiveInt))
    .action(async (o: Common & { tiny?: boolean; twins?: number }) => {
      await start();
      const { labChaos } = await import('./chaos.ts');
      const { summarize } = await import('./stats.ts');
      const s = await labChaos({ quick: !!o.quick, size: o.tiny ? 'tiny' : o.quick ? 'quick' : 'full', twins: o.twins, out: o.out, run: await control(o) }) as null | { nullDiffering: number; middleDiffers: boolean; layers: { name: string; lambdas: number[] }[]; gain: { middleDiffers: boolean; final: { name: string; spectral: number[] }[] } };
      if (!await finishStatus() || !s) return;
      process.stdout.write(`chaos\tnull_twin_weights_differing=${s.nullDiffering}\tmiddle_differs=${s.middleDiffers}\n`);
      for (const L of s.layers) process.stdout.write(`chaos\t${L.name}\tlambdas=${L.lambdas.map((v) => v.toFixed(5)).join(',')}\n`);
      const iv = (x: number[], d: number) => { const m = summarize(x); return `n=${m.n}\tmean=${m.mean.toFixed(d)}\tsd=${(m.sd || 0).toFixed(d)}\tlo=${m.lo.toFixed(d)}\thi=${m.hi.toFixed(d)}`; };
      for (const L of s.layers) process.stdout.write(`chaos\tlambda\t${L.name}\t${iv(L.lambdas, 5)}\n`);
      for (const g of s.gain.final) process.stdout.write(`chaos\tgain\t${g.name}\t${iv(g.spectral, 4)}\n`);
      process.stdout.write(`chaos\tgain_middle_differs=${s.gain.middleDiffers}\n`);
      await done(o.out);
    });

  runOptions(common(lab.command('fp8').description('FP8 training (E4M3 forward, E5M2 errors, delayed scaling, fp32 master) and OCP MX formats on the GEMMs (MXFP8/MXFP6/MXFP4/MXINT8) vs fp32, n seeds per recipe'))
    .option('--tiny', 'a narrow network on 2000 images (for tests)')
    .option('--seeds <n>', 'seeds per recipe (default 3 with --quick/--tiny, 5 in full mode)', positiveInt)
    .option('--only <list>', 'run only these recipes besides fp32: fp8,fp8-unscaled,bf16,mxfp8,mxfp6,mxfp4,mxint8'))
    .action(async (o: Common & { tiny?: boolean; seeds?: number; only?: string }) => {
      await start();
      const { labFp8 } = await import('./fp8.ts');
      const { summarize } = await import('./stats.ts');
      const cells = await labFp8({ quick: !!o.quick, size: o.tiny ? 'tiny' : o.quick ? 'quick' : 'full', seeds: o.seeds, out: o.out, only: o.only?.split(',').map((s) => s.trim()).filter(Boolean), run: await control(o) });
      if (!await finishStatus()) return;
      for (const c of cells!) { const s = summarize(c.accs); process.stdout.write(`fp8\t${c.name}\tn=${s.n}\tacc_mean=${s.mean.toFixed(4)}\tacc_sd=${(s.sd || 0).toFixed(4)}\n`); }
      await done(o.out);
    });

  runOptions(common(lab.command('int8').description('int8 post-training quantization and quantization-aware training (per-tensor and per-channel weights) vs fp32, n seeds'))
    .option('--tiny', 'a narrow network on 2000 images (for tests)')
    .option('--seeds <n>', 'seeds (default 3 with --quick/--tiny, 5 in full mode)', positiveInt))
    .action(async (o: Common & { tiny?: boolean; seeds?: number }) => {
      await start();
      const { labInt8 } = await import('./int8.ts');
      const { summarize } = await import('./stats.ts');
      const data = await labInt8({ quick: !!o.quick, size: o.tiny ? 'tiny' : o.quick ? 'quick' : 'full', seeds: o.seeds, out: o.out, run: await control(o) });
      if (!await finishStatus()) return;
      for (const c of data!.cells) {
        const s = summarize(c.accs), d = summarize(c.diffs);
        process.stdout.write(`int8\t${c.key}\tn=${s.n}\tacc_mean=${s.mean.toFixed(4)}\tacc_sd=${(s.sd || 0).toFixed(4)}\tdiff_mean=${d.mean.toFixed(4)}\tdiff_lo=${d.lo.toFixed(4)}\tdiff_hi=${d.hi.toFixed(4)}\n`);
      }
      await done(o.out);
    });

  common(lab.command('estimate').description('time the first steps of one run of every kind in each section\'s full mode and print how long the missing full-mode runs would take here'))
    .option('--steps <n>', 'timed steps per kind of run (default 20, after 3 warm-up steps)', positiveInt)
    .option('--sections <list>', 'only these sections: gupta2015,fp8,int8,swallow,chaos')
    .option('--runs <dir>', 'run store folder (default <out>/precision/runs)')
    .action(async (o: Common & { steps?: number; sections?: string }) => {
      await start();
      const { labEstimate } = await import('./estimate.ts');
      await labEstimate({ quick: false, out: o.out, steps: o.steps, sections: o.sections?.split(',').map((x) => x.trim()).filter(Boolean), run: { runsDir: o.runs } });
    });

  common(lab.command('speed').description('guess 1: GEMM throughput by dtype on this machine, memory per parameter by format'))
    .action(async (o: Common) => {
      await start();
      const { labSpeed } = await import('./speed.ts');
      await labSpeed({ quick: !!o.quick, out: o.out });
      await done(o.out);
    });

  runOptions(common(lab.command('report').description('run every experiment and regenerate the whole report, with answers to the three guesses'))
    .option('--skip <list>', 'experiments to reuse from a previous run instead of re-running (e.g. gupta2015)'))
    .action(async (o: Common & { skip?: string }) => {
      await start();
      const { labReport } = await import('./lab-report.ts');
      await labReport({ quick: !!o.quick, out: o.out, skip: (o.skip ?? '').split(',').filter(Boolean), run: await control(o) });
      await done(o.out);
      await finishStatus();
    });
}
