// Shared options and helpers of the `npm run lab` experiments.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { SUB } from './report.ts';

/** Options every experiment takes. */
export interface LabOptions {
  /** Small subset and short runs (minutes); otherwise the full configuration. */
  quick: boolean;
  /** Folder that receives precision.md and precision/ (default reports). */
  out: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
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
export function stamp(quick: boolean, seconds: number, what: string): string {
  return `_Mode: **${quick ? 'quick (subset — not the full experiment)' : 'full'}** — ${what}. Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${seconds.toFixed(0)} s wall, load average ${loadavg()[0].toFixed(1)} on ${cpus().length} cores at the end._`;
}
