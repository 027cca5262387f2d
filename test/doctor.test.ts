// `slimfit doctor`: each addon active with where it was loaded from, or why it is off; --json for machines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADDONS, addonStatus } from '../src/core/native.ts';
import { runCli } from '../dev/helpers.ts';
import type { DoctorReport } from '../src/cli/doctor.ts';

const NAMES = Object.keys(ADDONS);

test('doctor --json lists every addon with its state matching this process, the engine CPU features and the platform', async () => {
  const r = await runCli(['doctor', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as DoctorReport;
  assert.equal(rep.platform, `${process.platform}-${process.arch}`);
  assert.equal(rep.node, process.version);
  assert.deepEqual(rep.addons.map((a) => a.name), NAMES);
  for (const a of rep.addons) {
    const here = addonStatus(a.name); // the same search in this (test) process, from the sources
    assert.equal(a.active, here.module !== null, `${a.name}: ${a.why}`);
    assert.equal(a.from, here.from, a.name);
    if (a.active) assert.ok(a.path?.endsWith(`${a.from}/${a.name}.node`), `${a.name}: ${a.path}`);
    else assert.match(a.why ?? '', /not built|failed to load|turned off by SLIMFIT_DISABLE/);
  }
  const engine = rep.addons[0];
  if (engine.active) {
    assert.ok(rep.engine, 'engine loaded: CPU features reported');
    assert.ok(['avx512', 'avx2', 'generic'].includes(rep.engine.isa));
    assert.equal(typeof rep.engine.openblas, 'boolean');
    assert.match(rep.training, /native engine/);
  } else {
    assert.equal(rep.engine, null);
    assert.match(rep.training, /plain TensorFlow\.js/);
  }
});

test('doctor says which addons SLIMFIT_DISABLE turned off and that training then runs on plain TensorFlow.js', async () => {
  const r = await runCli(['doctor'], { env: { SLIMFIT_DISABLE: 'engine,csv' } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^slimfit \d+\.\d+\.\d+, Node v\d+/m);
  assert.match(r.stdout, /slimfit_engine\s+off: turned off by SLIMFIT_DISABLE \(it names engine or native\)/);
  assert.match(r.stdout, /slimfit_csv\s+off: turned off by SLIMFIT_DISABLE/);
  assert.match(r.stdout, /CPU features: unknown \(the engine addon is not loaded\)/);
  assert.match(r.stdout, /training runs on plain TensorFlow\.js \(wasm backend\)/);
  const gather = addonStatus('slimfit_gather');
  if (gather.module) assert.match(r.stdout, new RegExp(`slimfit_gather\\s+active, from ${gather.from!.replace('/', '\\/')}`));
});

test('a malformed SLIMFIT_DISABLE is a one-line user error, not a stack trace', async () => {
  const r = await runCli(['doctor'], { env: { SLIMFIT_DISABLE: 'engin' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^slimfit: error: environment variable SLIMFIT_DISABLE="engin" is not valid/m);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});
