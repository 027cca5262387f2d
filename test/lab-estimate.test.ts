// `npm run lab -- estimate` counts every full-mode run of a section by its run key, the swallow plateau's included,
// and times only the kinds that still have missing runs. Fake records (right keys, empty results) in a temporary run
// store: no MNIST run is timed; one plateau run is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../dev/helpers.ts';
import { runKey, writeRecord, type Unit } from '../lab/runs.ts';
import { labEstimate, type EstimateRow } from '../lab/estimate.ts';
import { SWALLOW_VERSION, swallowUnits } from '../lab/swallow.ts';
import { PLATEAU_RECIPES } from '../lab/plateau.ts';

const machine = { cpu: 'test', cores: 1, host: 'test', load1: 0, jobs: 1, threads: 1 };

function fakeRecord(dir: string, u: Unit): string {
  const key = runKey('swallow', SWALLOW_VERSION, u.spec);
  writeRecord(dir, { section: 'swallow', version: SWALLOW_VERSION, key, label: u.label, spec: u.spec, result: {}, started: '', finished: '', seconds: 0, machine });
  return key;
}

/** The swallow row of an estimate over `runsDir`, with the table kept off stdout and the progress lines returned. */
async function estimate(out: string, runsDir: string): Promise<{ row: EstimateRow; log: string[] }> {
  const log: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    const rows = await labEstimate({ quick: false, out, sections: ['swallow'], run: { runsDir }, log: (l) => log.push(l) });
    assert.equal(rows.length, 1);
    return { row: rows[0], log };
  } finally { process.stdout.write = write; }
}

test('lab estimate counts the swallow plateau runs on record and adds time only for the missing ones', async () => {
  const t = tempDir();
  try {
    const runs = join(t.dir, 'runs'), dir = join(runs, 'swallow');
    const units = swallowUnits('full', 5);
    const plateau = units.filter((u) => u.spec.part === 'plateau');
    assert.ok(plateau.length > 0 && plateau.length < units.length);
    const keys = units.map((u) => fakeRecord(dir, u));

    const all = await estimate(t.dir, runs);
    assert.deepEqual({ units: all.row.units, onRecord: all.row.onRecord, seconds: all.row.seconds }, { units: units.length, onRecord: units.length, seconds: 0 });
    assert.deepEqual(all.log, [], 'nothing is timed when every run is on record');

    // two plateau runs of one recipe missing: only that recipe is timed, for two runs
    const gone = plateau.filter((u) => u.spec.recipe === PLATEAU_RECIPES[0].name).slice(0, 2);
    for (const u of gone) rmSync(join(dir, `${keys[units.indexOf(u)]}.json`));
    const some = await estimate(t.dir, runs);
    assert.equal(some.row.units, units.length);
    assert.equal(some.row.onRecord, units.length - 2);
    assert.ok(some.row.seconds > 0);
    assert.equal(some.log.length, 1, some.log.join('\n'));
    assert.match(some.log[0], new RegExp(`^estimate swallow plateau ${PLATEAU_RECIPES[0].name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .* per run x 2$`));
  } finally { t.cleanup(); }
});
