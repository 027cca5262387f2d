// Shared options and helpers of the `npm run lab` experiments.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { SUB } from './report.ts';
import { duration, type RunControl, type RunOutcome } from './runs.ts';

/** Options every experiment takes. */
export interface LabOptions {
  /** Small subset and short runs (minutes); otherwise the full configuration. */
  quick: boolean;
  /** Folder that receives precision.md and precision/ (default reports). */
  out: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Run store and scheduling of the section's units (lab/runs.ts): jobs, deadline, fresh, runs folder. */
  run?: RunControl;
}

/** Completeness of a section's runs in this process (read by the CLI for its exit code and by `lab report`). */
export interface SectionStatus { section: string; size: string; done: number; total: number; secondsLeft: number }

/** Every section run in this process, in order. */
export const SECTION_STATUS: SectionStatus[] = [];

/**
 * Record a section's outcome; when runs are missing, say so ("n of N runs done, about T left") and return false (the
 * caller then writes no section).
 */
export function noteOutcome(o: LabOptions, section: string, size: string, r: RunOutcome<unknown>): boolean {
  SECTION_STATUS.push({ section, size, done: r.done, total: r.total, secondsLeft: r.secondsLeft });
  if (r.results) return true;
  const jobs = o.run?.jobs ?? 1;
  const left = Number.isFinite(r.secondsLeft) ? `about ${duration(r.secondsLeft)} left${jobs > 1 ? ` with ${jobs} jobs` : ''}` : 'time left unknown until a run has been timed (`npm run lab -- estimate` measures it)';
  logger(o)(`${section}: ${r.done} of ${r.total} runs done, ${left}; the section is written once all are done (run the same command again; records are kept)`);
  return false;
}

/** The log function of `o` (stderr by default). */
export function logger(o: LabOptions): (line: string) => void {
  return o.log ?? ((s: string) => process.stderr.write(s + '\n'));
}

/** Save machine-readable results next to the section (used by the answers section). */
export async function saveJson(out: string, name: string, data: unknown): Promise<void> {
  await mkdir(join(out, SUB), { recursive: true });
  await writeFile(join(out, SUB, `${name}.json`), JSON.stringify(data, null, 1));
}

/** Header line of a section: mode, date, wall time. */
export function stamp(quick: boolean, seconds: number, what: string, runs?: string): string {
  const when = runs ? `${runs}; section written ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC` : `Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${seconds.toFixed(0)} s wall`;
  return `_Mode: **${quick ? 'quick (subset — not the full experiment)' : 'full'}** — ${what}. ${when}, load average ${loadavg()[0].toFixed(1)} on ${cpus().length} cores at the end._`;
}
