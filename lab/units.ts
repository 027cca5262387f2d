// The unit runners of the lab's sections by name, for the child processes of `--jobs N` (lab/unit-worker.ts).
import type { UnitRunner } from './runs.ts';
import { guptaUnit } from './gupta.ts';
import { fp8Unit } from './fp8.ts';
import { int8Unit } from './int8.ts';
import { swallowUnit } from './swallow.ts';
import { chaosUnit } from './chaos.ts';

const RUNNERS: Record<string, UnitRunner> = {
  gupta2015: guptaUnit as UnitRunner,
  fp8: fp8Unit as UnitRunner,
  int8: int8Unit as UnitRunner,
  swallow: swallowUnit as UnitRunner,
  chaos: chaosUnit as UnitRunner,
};

/** The runner of `section`'s units. */
export function unitRunner(section: string): UnitRunner {
  const r = RUNNERS[section];
  if (!r) throw new Error(`no unit runner for section ${section}`);
  return r;
}
