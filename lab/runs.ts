// The lab's run store: every independent unit of an experiment (one cell × seed training run, one recipe × seed, ...)
// leaves a small JSON record under <out>/precision/runs/<section>/<key>.json, so a full-mode report can be built over
// several sessions (records are committed as results) and on several cores (`--jobs N` child processes at 1 engine
// thread each).
import { createHash } from 'node:crypto';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, hostname, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SlimfitError } from '../src/core/errors.ts';
import { createProgress } from '../src/core/progress.ts';
import { nativeSettings } from '../src/core/config.ts';
import { SUB } from './report.ts';

/** Exit code of a lab command that stopped with runs still missing (BSD sysexits EX_TEMPFAIL: run it again). */
export const EXIT_INCOMPLETE = 75;

/** How a section schedules its runs (the lab commands' `--jobs`, `--budget`, `--fresh`, `--runs`). */
export interface RunControl {
  /**
   * Child processes running units at once, each with the engine at 1 thread (default 1), so a unit's result does not
   * depend on how many run at once (the engine's GEMMs split work by thread count, which moves last bits); 0 runs them
   * in this process with the engine's configured threads (for debugging a unit: its last bits may differ).
   */
  jobs?: number;
  /** Wall-clock deadline (ms since the epoch) after which no new unit starts; running ones finish. */
  deadline?: number;
  /** Ignore (and overwrite) existing records. */
  fresh?: boolean;
  /** Folder of the run store (default `<out>/precision/runs`). */
  runsDir?: string;
}

/** One unit of work: a JSON spec (everything that determines its result) and a label for progress lines. */
export interface Unit<S = unknown> { spec: S; label: string }

/** What a finished unit leaves on disk. */
export interface RunRecord<S = unknown, R = unknown> {
  section: string;
  version: number;
  key: string;
  label: string;
  spec: S;
  result: R;
  /** ISO times and seconds of the run, and the machine it ran on. */
  started: string;
  finished: string;
  seconds: number;
  /** `threads`: the engine's threads in the process that ran the unit (1 in a child; 0 = one per core). */
  machine: { cpu: string; cores: number; host: string; load1: number; jobs: number; threads: number };
}

/** Outcome of {@link runUnits}: the results in unit order when all are there, else null, and the counts. */
export interface RunOutcome<R> {
  results: R[] | null;
  done: number;
  total: number;
  /** Estimated seconds for the missing units at this run's (or the records') pace and `jobs`. */
  secondsLeft: number;
  /** The records of the units present, in unit order. */
  records: RunRecord[];
}

/**
 * One sentence on where and when a section's runs were made, for its header.
 * @example runsNote(outcome.records) // "40 runs recorded 2026-12-06 15:10 – 2026-12-07 11:02 UTC, 3.1 h of run time, on Intel Xeon (2 cores)"
 */
export function runsNote(records: RunRecord[]): string {
  if (!records.length) return 'no runs';
  const t = records.map((r) => r.started).sort(), e = records.map((r) => r.finished).sort();
  const when = (iso: string) => iso.slice(0, 16).replace('T', ' ');
  const machines = [...new Set(records.map((r) => `${r.machine.cpu} (${r.machine.cores} cores)`))];
  const secs = records.reduce((s, r) => s + r.seconds, 0);
  return `${records.length} runs recorded ${when(t[0])} – ${when(e[e.length - 1])} UTC, ${duration(secs)} of run time in all, on ${machines.join('; ')}`;
}

/**
 * JSON with sorted keys and non-finite numbers kept as strings ("NaN", "Infinity", "-Infinity").
 * @example canonicalJson({ b: NaN, a: [1] }) // '{"a":[1],"b":"NaN"}'
 */
export function canonicalJson(v: unknown, indent?: number): string {
  const norm = (x: unknown): unknown => {
    if (typeof x === 'number') return Number.isFinite(x) ? x : String(x);
    if (Array.isArray(x)) return x.map(norm);
    if (x && typeof x === 'object') {
      if (ArrayBuffer.isView(x)) return Array.from(x as unknown as ArrayLike<number>, norm);
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(x).sort()) { const val = (x as Record<string, unknown>)[k]; if (val !== undefined) o[k] = norm(val); }
      return o;
    }
    return x;
  };
  return JSON.stringify(norm(v), null, indent);
}

/**
 * Parse JSON written by {@link canonicalJson}, turning "NaN"/"Infinity"/"-Infinity" back into numbers.
 * @example parseCanonical('{"b":"NaN"}') // { b: NaN }
 */
export function parseCanonical(text: string): unknown {
  return JSON.parse(text, (_k, v) => (v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v));
}

/**
 * The key of a unit: the first 16 hex digits of SHA-256 over the section, its VERSION and the canonical spec.
 * @example runKey('fp8', 1, { size: 'tiny', recipe: 'fp32', seed: 1 }) // '3f1c...' (16 hex digits)
 */
export function runKey(section: string, version: number, spec: unknown): string {
  return createHash('sha256').update(canonicalJson({ section, version, spec })).digest('hex').slice(0, 16);
}

/** A configuration without the counts of runs (`seeds`, `twins`): they say how many units there are, not what one computes. */
export type UnitConfig<T> = Omit<T, 'seeds' | 'twins'>;

/**
 * `cfg` without `seeds` and `twins`, for a unit's spec (so a unit's key does not change with the number of units).
 * @example unitConfig({ hidden: [64], seeds: 3 }) // { hidden: [64] }
 */
export function unitConfig<T extends object>(cfg: T): UnitConfig<T> {
  const { seeds: _s, twins: _t, ...rest } = cfg as T & { seeds?: unknown; twins?: unknown };
  return rest as UnitConfig<T>;
}

/** Folder of a section's records. */
export function sectionRunsDir(out: string, section: string, runsDir?: string): string {
  return join(runsDir ?? join(out, SUB, 'runs'), section);
}

/**
 * Every record in a section's folder, checked: a file that does not parse, lacks a field, or whose key does not match
 * its content (or its file name) is a SlimfitError naming the file and the fix (delete it). Records of other versions
 * or sizes are valid and simply not used.
 */
export function loadRecords(dir: string): Map<string, RunRecord> {
  const out = new Map<string, RunRecord>();
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.json')) continue;
    const file = join(dir, name);
    const fix = 'delete it and run the section again to redo that run';
    let r: RunRecord;
    try {
      r = parseCanonical(readFileSync(file, 'utf8')) as RunRecord;
    } catch (e) {
      throw new SlimfitError(`run record ${file} is not valid JSON (${(e as Error).message}); ${fix}`);
    }
    if (!r || typeof r !== 'object' || typeof r.section !== 'string' || typeof r.version !== 'number' || typeof r.key !== 'string' || !('spec' in r) || !('result' in r)) {
      throw new SlimfitError(`run record ${file} lacks its section, version, key, spec or result; ${fix}`);
    }
    const want = runKey(r.section, r.version, r.spec);
    if (r.key !== want || name !== `${r.key}.json`) {
      throw new SlimfitError(`run record ${file} does not match its content (key ${r.key}, file ${name}, content hashes to ${want}): it was edited or copied; ${fix}`);
    }
    out.set(r.key, r);
  }
  return out;
}

/**
 * Write a record as `<dir>/<key>.json` through a temporary file renamed into place.
 * @example writeRecord('reports/precision/runs/fp8', record)
 */
export function writeRecord(dir: string, rec: RunRecord): void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${rec.key}.json`);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, canonicalJson(rec, 1) + '\n');
  renameSync(tmp, path);
}

/**
 * How many of `units` have a record in `dir` (for `lab report`'s completeness table).
 * @example countDone('reports/precision/runs/int8', 'int8', 1, units) // { done: 3, total: 5 }
 */
export function countDone(dir: string, section: string, version: number, units: Unit[]): { done: number; total: number } {
  const have = loadRecords(dir);
  return { done: units.filter((u) => have.has(runKey(section, version, u.spec))).length, total: units.length };
}

function machineInfo(jobs: number): RunRecord['machine'] {
  const c = cpus();
  return { cpu: c[0]?.model.trim() ?? 'unknown', cores: c.length, host: hostname(), load1: Number(loadavg()[0].toFixed(2)), jobs, threads: jobs ? 1 : nativeSettings().threads };
}

/**
 * Human duration.
 * @example duration(3900) // '1 h 05 min'; duration(40) // '40 s'
 */
export function duration(s: number): string {
  if (!Number.isFinite(s)) return 'unknown time';
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.round((s % 3600) / 60)).padStart(2, '0')} min`;
  if (s >= 90) return `${Math.round(s / 60)} min`;
  return `${Math.round(s)} s`;
}

/** A section's runner as the child processes see it: `run(spec)` computes one unit's result. */
export type UnitRunner = (spec: unknown) => Promise<unknown> | unknown;

/**
 * Run the units of `section` that have no record yet (all with `fresh`), in this process or in `jobs` child processes,
 * writing a record for each; stop starting new units after `deadline`. Returns the results in unit order when every
 * unit has a record, else null with the counts and an estimate of the time left.
 *
 * @example
 * const o = await runUnits('fp8', 1, units, runFp8Unit, { out: 'reports', jobs: 2 });
 * if (!o.results) console.log(`${o.done} of ${o.total} runs done`);
 */
export async function runUnits<S, R>(section: string, version: number, units: Unit<S>[], run: (spec: S) => Promise<R> | R,
  o: RunControl & { out: string; log?: (s: string) => void }): Promise<RunOutcome<R>> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const dir = sectionRunsDir(o.out, section, o.runsDir);
  const have = o.fresh ? new Map<string, RunRecord>() : loadRecords(dir);
  const keys = units.map((u) => runKey(section, version, u.spec));
  if (new Set(keys).size !== keys.length) throw new Error(`${section}: two units share a spec`);
  const missing = units.map((u, i) => ({ u, key: keys[i] })).filter((m) => !have.has(m.key));
  const jobs = Math.max(0, o.jobs ?? 1);
  const prior = keys.map((k) => have.get(k)?.seconds).filter((s): s is number => s !== undefined);
  const thisRun: number[] = [];
  const pace = () => { const v = thisRun.length ? thisRun : prior; return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN; };
  if (missing.length) log(`${section}: ${units.length - missing.length} of ${units.length} runs on record in ${dir}; running ${missing.length} ${jobs ? `in ${Math.min(jobs, missing.length)} process${Math.min(jobs, missing.length) > 1 ? 'es' : ''} (engine at 1 thread each)` : 'in this process'}`);
  const progress = createProgress({ label: section, total: missing.length, unit: 'runs', plainEvery: 0 });
  const finish = (m: { u: Unit<S>; key: string }, result: unknown, started: Date, seconds: number) => {
    const rec: RunRecord = { section, version, key: m.key, label: m.u.label, spec: m.u.spec, result, started: started.toISOString(), finished: new Date().toISOString(), seconds, machine: machineInfo(jobs) };
    writeRecord(dir, rec);
    // the result is used as the record holds it (the same JSON a later session reads back)
    have.set(m.key, parseCanonical(canonicalJson(rec)) as RunRecord);
    thisRun.push(seconds);
    progress.tick(1, `${m.u.label} ${seconds.toFixed(1)} s`);
  };
  const late = () => o.deadline !== undefined && Date.now() >= o.deadline;
  if (jobs === 0) {
    for (const m of missing) {
      if (late()) break;
      const t0 = performance.now(), started = new Date();
      const result = await run(m.u.spec);
      finish(m, result, started, (performance.now() - t0) / 1000);
    }
  } else {
    await runInChildren(section, missing, Math.min(jobs, missing.length), late, finish);
  }
  if (missing.length && process.stderr.isTTY) progress.done(); // plain lines already printed one per run
  const done = keys.filter((k) => have.has(k)).length;
  const left = units.length - done;
  return { results: left ? null : keys.map((k) => have.get(k)!.result as R), done, total: units.length, secondsLeft: left * pace() / Math.max(1, jobs), records: keys.filter((k) => have.has(k)).map((k) => have.get(k)!) };
}

/** Run `missing` in `n` child processes (lab/unit-worker.ts, engine at 1 thread each), one unit per message. */
async function runInChildren<S>(section: string, missing: { u: Unit<S>; key: string }[], n: number, late: () => boolean,
  finish: (m: { u: Unit<S>; key: string }, result: unknown, started: Date, seconds: number) => void): Promise<void> {
  if (!n) return;
  const worker = fileURLToPath(new URL('./unit-worker.ts', import.meta.url));
  const tsx = import.meta.resolve('tsx');
  let next = 0;
  const children: ChildProcess[] = [];
  await new Promise<void>((resolve, reject) => {
    let live = 0, failed = false;
    const fail = (e: Error) => { if (failed) return; failed = true; for (const c of children) c.kill(); reject(e); };
    for (let i = 0; i < n; i++) {
      const child = fork(worker, [], { execArgv: ['--import', tsx], env: { ...process.env, SLIMFIT_THREADS: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      live++;
      let current: { m: { u: Unit<S>; key: string }; started: Date } | null = null;
      const give = () => {
        if (failed || next >= missing.length || late()) { current = null; child.send({ type: 'exit' }); return; }
        const m = missing[next++];
        current = { m, started: new Date() };
        child.send({ type: 'run', section, spec: m.u.spec });
      };
      child.on('message', (msg: { type: string; result?: string; seconds?: number; error?: string; slimfit?: boolean }) => {
        if (msg.type === 'ready') return give();
        if (msg.type === 'error') return fail(msg.slimfit ? new SlimfitError(msg.error!) : new Error(`${section} unit ${current?.m.u.label}: ${msg.error}`));
        if (msg.type === 'done' && current) {
          try { finish(current.m, parseCanonical(msg.result!), current.started, msg.seconds!); } catch (e) { return fail(e as Error); }
          give();
        }
      });
      child.on('exit', (code, signal) => {
        live--;
        if (current && !failed) fail(new Error(`${section}: a unit process ended (${signal ?? `code ${code}`}) while running ${current.m.u.label}`));
        if (live === 0 && !failed) resolve();
      });
      child.on('error', (e) => fail(e));
    }
  });
}
