// `npm run lab -- estimate`: how long each section's full mode would take here at today's step speed, from a short
// timing of one run per kind of unit (the first steps of each distinct network and recipe).
import { loadavg } from 'node:os';
import { canonicalJson, duration, runKey, loadRecords, sectionRunsDir, type Unit } from './runs.ts';
import { STEP_PROBE } from './run.ts';
import { machine, table } from './report.ts';
import { logger, type LabOptions } from './common.ts';
import { nativeSettings } from '../src/core/config.ts';

class ProbeDone extends Error { constructor(readonly setup: number, readonly perStep: number) { super('probe done'); } }

/**
 * Seconds before the first step (model build, step-0 evaluation) and per step: the median of `steps` step times after
 * `warm` (a median, because other processes on a loaded machine stretch single steps several-fold).
 */
async function probe(run: () => unknown, steps: number, warm: number): Promise<{ setup: number; perStep: number } | null> {
  let t0 = performance.now(), setup = 0, n = 0, last = 0;
  const times: number[] = [];
  STEP_PROBE.fn = (ev) => {
    const now = performance.now();
    if (ev === 'start') { setup = (now - t0) / 1000; last = now; return; }
    n++;
    if (n > warm) times.push((now - last) / 1000);
    last = now;
    if (times.length === steps) throw new ProbeDone(setup, [...times].sort((a, b) => a - b)[Math.floor(steps / 2)]);
  };
  t0 = performance.now();
  try { await run(); return null; } catch (e) { if (e instanceof ProbeDone) return { setup: e.setup, perStep: e.perStep }; throw e; } finally { STEP_PROBE.fn = null; }
}

/** A section's full-mode units, how one is timed, and its steps and evaluation points per unit. */
interface Plan { section: string; version: number; units: Unit[]; run: (spec: unknown) => unknown; shape: (spec: any) => { steps: number; evals: number; extraSteps?: number; note?: string } } // eslint-disable-line @typescript-eslint/no-explicit-any

/** The kind of a unit (its spec without the seed and the twin's weight index): units of one kind cost the same. */
function kindOf(spec: unknown): string {
  const { seed: _s, index: _i, twin: _t, ...rest } = spec as Record<string, unknown>;
  return canonicalJson(rest);
}

/** One row of the estimate. */
export interface EstimateRow { section: string; units: number; kinds: number; onRecord: number; seconds: number; note: string }

/**
 * Time the first `steps` steps of one unit of every kind of each section's full mode and extrapolate to all its units
 * (one job; evaluation points counted as the step-0 setup time each).
 * @example await labEstimate({ quick: false, out: 'reports' }) // rows with seconds per section
 */
export async function labEstimate(o: LabOptions & { steps?: number; sections?: string[] }): Promise<EstimateRow[]> {
  const log = logger(o);
  const steps = o.steps ?? 20, warm = 3;
  const g = await import('./gupta.ts'), f8 = await import('./fp8.ts'), i8 = await import('./int8.ts'), sw = await import('./swallow.ts'), ch = await import('./chaos.ts'), pl = await import('./plateau.ts');
  const plans = ([
    { section: 'gupta2015', version: g.GUPTA_VERSION, units: g.guptaUnits({ quick: false, out: o.out, size: 'full' }), run: g.guptaUnit as Plan['run'], shape: (s: any) => { const st = Math.floor(s.cfg.trainN / s.cfg.batch) * s.cfg.epochs; return { steps: st, evals: st / s.cfg.evalEvery }; } },
    { section: 'fp8', version: f8.FP8_VERSION, units: f8.fp8Units({ quick: false, out: o.out, size: 'full' }), run: f8.fp8Unit as Plan['run'], shape: (s: any) => ({ steps: Math.floor(s.cfg.trainN / 100) * s.cfg.epochs, evals: 1 }) },
    { section: 'int8', version: i8.INT8_VERSION, units: i8.int8Units({ quick: false, out: o.out, size: 'full' }), run: i8.int8Unit as Plan['run'], shape: (s: any) => ({ steps: Math.floor(s.cfg.trainN / 100) * s.cfg.epochs, evals: 1, extraSteps: 3 * Math.floor(s.cfg.trainN / 100), note: 'the 3 fine-tuning passes per seed are counted at the fp32 step time (fake-quantized steps cost more): a lower bound' }) },
    { section: 'swallow', version: sw.SWALLOW_VERSION, units: sw.swallowUnits('full', 5).filter((u) => u.spec.part !== 'plateau'), run: sw.swallowUnit as Plan['run'], shape: (s: any) => ({ steps: s.cfg.steps, evals: s.cfg.steps / s.cfg.evalEvery }) },
    { section: 'chaos', version: ch.CHAOS_VERSION, units: ch.chaosUnits('full'), run: ch.chaosUnit as Plan['run'], shape: (s: any) => ({ steps: s.cfg.steps, evals: s.cfg.steps / s.cfg.evalEvery, note: 'each job process also recomputes the base trajectory once (one more run per job)' }) },
  ] as Plan[]).filter((p) => !o.sections || o.sections.includes(p.section));
  const rows: EstimateRow[] = [];
  for (const p of plans) {
    const have = loadRecords(sectionRunsDir(o.out, p.section, o.run?.runsDir));
    const kinds = new Map<string, Unit[]>();
    for (const u of p.units) { const k = kindOf(u.spec); kinds.set(k, [...(kinds.get(k) ?? []), u]); }
    let total = 0, onRecord = 0;
    let note = '';
    for (const [, us] of kinds) {
      const missing = us.filter((u) => !have.has(runKey(p.section, p.version, u.spec)));
      onRecord += us.length - missing.length;
      if (!missing.length) continue;
      const u = us[0];
      // chaos twins need the base trajectory first: time a seed run instead (the same network and steps, no gain)
      const timed = p.section === 'chaos' && (u.spec as { kind: string }).kind !== 'base' ? p.units[1] : u;
      const m = await probe(() => p.run(timed.spec), steps, warm);
      if (!m) continue;
      const sh = p.shape(u.spec);
      const per = sh.evals * m.setup + (sh.steps + (sh.extraSteps ?? 0)) * m.perStep;
      total += per * missing.length;
      if (sh.note) note = sh.note;
      log(`estimate ${p.section} ${u.label}: ${(1000 * m.perStep).toFixed(1)} ms/step, ${m.setup.toFixed(2)} s per evaluation point -> ${duration(per)} per run x ${missing.length}`);
    }
    rows.push({ section: p.section, units: p.units.length, kinds: kinds.size, onRecord, seconds: total, note });
  }
  const swRow = rows.find((r) => r.section === 'swallow');
  if (swRow) {
    // the plateau's deep linear network is plain JS and small: its units are counted by their run keys like the others,
    // and one whole run of each recipe that has missing units is timed (all initial scales cost the same steps)
    const units = sw.swallowUnits('full', 5, ['plateau']);
    const have = loadRecords(sectionRunsDir(o.out, 'swallow', o.run?.runsDir));
    const cfg = pl.PLATEAU_CONFIG.full;
    for (const r of pl.PLATEAU_RECIPES) {
      const mine = units.filter((u) => u.spec.part === 'plateau' && u.spec.recipe === r.name);
      const missing = mine.filter((u) => !have.has(runKey('swallow', sw.SWALLOW_VERSION, u.spec)));
      swRow.units += mine.length;
      swRow.kinds++;
      swRow.onRecord += mine.length - missing.length;
      if (!missing.length) continue;
      const init = (missing[0].spec as { cfg: { init: number } }).cfg.init;
      const t0 = performance.now();
      pl.runPlateau({ ...cfg, init }, r, 1);
      const per = (performance.now() - t0) / 1000;
      swRow.seconds += per * missing.length;
      log(`estimate swallow plateau ${r.name}: ${duration(per)} per run x ${missing.length}`);
    }
  }
  const md = table(['section', 'full-mode runs', 'kinds timed', 'on record', 'estimated time left (1 job)', 'note'], rows.map((r) => [r.section, r.units, r.kinds, r.onRecord, duration(r.seconds), r.note || '–']));
  const th = nativeSettings().threads;
  const thNote = th === 1 ? 'the engine at 1 thread, as each job runs' : `the engine at ${th || 'all'} threads, but each job runs at 1 thread: set SLIMFIT_THREADS=1 for the speed of a job`;
  process.stdout.write(`${md}\n\nTotal ${duration(rows.reduce((s, r) => s + r.seconds, 0))} with one job (${thNote}; N jobs on N free cores take about 1/N of it), from the median of ${steps} step times after ${warm} warm-up steps of one run per kind (each evaluation point costed as the step-0 setup); ${machine()}; load average ${loadavg().map((v) => v.toFixed(1)).join(' / ')} at the end.\n`);
  return rows;
}
