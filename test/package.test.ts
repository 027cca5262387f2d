// slimfit as users get it: `npm pack` (prepack builds dist/ and the prebuilt addons), the tarball installed into fresh
// projects with no TypeScript tooling of their own, then used from plain JavaScript, type-checked from strict
// TypeScript, run as `npx slimfit`, and installed with --ignore-scripts (the prebuilds alone must train).
// Packs from a copy of this checkout, so the repository's own dist/ and build/ stay untouched while other tests run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { py, ROOT, tempDir } from '../dev/helpers.ts';

/** The environment of every child: no SLIMFIT_* switches (this tests the package as installed) and no npm script state. */
const ENV: Record<string, string> = Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !/^(SLIMFIT_|npm_|INIT_CWD$)/.test(k)) as Array<[string, string]>);
ENV.npm_config_update_notifier = 'false';
ENV.npm_config_fund = 'false';
ENV.npm_config_audit = 'false';

/** Run a command; throws with its output when it fails. Returns stdout, stderr and the wall time. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): { stdout: string; stderr: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd, env: { ...ENV, ...env }, encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, ms };
}

/** A fresh npm project (ES modules) in `dir`. */
function newProject(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `user-${Date.now()}`, version: '1.0.0', private: true, type: 'module' }, null, 2));
}

/** Trains the built-in mlp one epoch on `store` through the public API and prints a JSON summary. */
const TRAIN_MJS = `
import { openDataset, createLoader, fit, buildModel } from 'slimfit';
import * as tfl from '@tensorflow/tfjs-layers';
const ds = await openDataset('store');
let seen = 0;
for await (const b of createLoader(ds.split('train'), { batchSize: 50 })) seen += b.n;
const model = buildModel('mlp', { inputShape: [8, 8], classes: 4 });
const h = await fit(model, 'store', { epochs: 1, batchSize: 32, progress: false });
const e = h.epochs[0];
console.log(JSON.stringify({ seen, epochs: h.epochs.length, loss: e.loss, accuracy: e.accuracy, valAccuracy: e.valAccuracy, sameClass: model instanceof tfl.LayersModel }));
`;

/** Uses the public API with its types; must compile under strict settings against the installed .d.ts. */
const CHECK_TS = `
import { openDataset, createLoader, fit, evaluate, buildModel, convert, isSlimfitError, type SlimfitError, type FitOptions, type History, type Manifest } from 'slimfit';
import { createLoader as loaderOnly, type LoaderOptions } from 'slimfit/loader';
import { quantize, BF16, parseFormat, type Format } from 'slimfit/precision';
import * as tfl from '@tensorflow/tfjs-layers';

const opts: FitOptions = { epochs: 1, batchSize: 32, progress: false };
const model: tfl.LayersModel = buildModel('mlp', { inputShape: [8, 8], classes: 4 });
const h: History = await fit(model, 'store', opts);
const ds = await openDataset('store');
const m: Manifest = ds.manifest;
const lo: LoaderOptions = { batchSize: 16, shuffle: 'global' };
for await (const b of createLoader(ds.split('train'), lo)) { const n: number = b.n; void n; }
void loaderOnly;
const f: Format = parseFormat('bf16');
const q: Float32Array = quantize(BF16, new Float32Array([1.5]));
const acc: number = (await evaluate(model, 'store')).accuracy;
try { await convert('missing.npz', 'out'); } catch (e) { if (isSlimfitError(e)) { const s: SlimfitError = e; console.log(s.message); } }
console.log(h.epochs.length, m.splits, f.name, q[0], acc);
`;

/** Wrong on purpose: each line must be a type error, so the check above cannot pass on types that are just \`any\`. */
const BAD_TS = `
import { openDataset, buildModel } from 'slimfit';
import { parseFormat } from 'slimfit/precision';
const a: number = await openDataset('store');
const b: string = buildModel('mlp', { inputShape: [8, 8], classes: 4 });
const c: boolean = parseFormat('bf16');
console.log(a, b, c);
`;

describe('the npm package', { timeout: 600_000 }, () => {
  const tmp = tempDir('slimfit-pkg-');
  const tarball = join(tmp.dir, 'out', 'slimfit-0.1.0.tgz');
  const app = join(tmp.dir, 'app');
  after(tmp.cleanup);

  before(() => {
    // A copy of the checkout's files (tracked and new, not ignored ones) with the repo's node_modules for the build tools.
    const src = join(tmp.dir, 'src');
    const files = run('git', ['ls-files', '-co', '--exclude-standard', '-z'], ROOT).stdout.split('\0').filter(Boolean);
    for (const f of files) {
      try { cpSync(join(ROOT, f), join(src, f)); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; } // deleted, not yet committed
    }
    symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
    mkdirSync(dirname(tarball));
    const pack = run('npm', ['pack', '--json', '--pack-destination', dirname(tarball)], src);
    const info = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as Array<{ filename: string; size: number; unpackedSize: number; entryCount: number; files: Array<{ path: string }> }>;
    writeFileSync(join(tmp.dir, 'pack.json'), JSON.stringify(info[0]));
    newProject(app);
    run('npm', ['install', tarball], app);
  });

  it('holds dist, bin, prebuilds and the native sources, and no tests or repository tools', () => {
    const info = JSON.parse(readFileSync(join(tmp.dir, 'pack.json'), 'utf8')) as { filename: string; size: number; unpackedSize: number; entryCount: number; files: Array<{ path: string }> };
    const paths = info.files.map((f) => f.path);
    console.log(`${info.filename}: ${info.entryCount} files, ${(info.size / 1e3).toFixed(0)} kB packed, ${(info.unpackedSize / 1e6).toFixed(2)} MB unpacked`);
    assert.deepEqual(paths.filter((p) => /^(test|bench|lab|reports|dev|build)\//.test(p)), []);
    for (const p of ['package.json', 'README.md', 'bin/slimfit.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/index.js', 'dist/loader/index.d.ts', 'dist/precision/index.d.ts', 'binding.gyp', 'native/build.mjs', 'native/addon.cc', 'src/loader/native/gather.c']) {
      assert.ok(paths.includes(p), `${p} in the tarball`);
    }
    assert.ok(paths.includes(`prebuilds/${process.platform}-${process.arch}/slimfit_engine.node`), 'the engine prebuild for this platform');
    assert.deepEqual(paths.filter((p) => /\.ts$/.test(p) && !p.endsWith('.d.ts')), [], 'no TypeScript sources');
  });

  it('`npx slimfit --help` answers in under 1 s on its first run', () => {
    const r = run('npx', ['slimfit', '--help'], app);
    console.log(`first npx slimfit --help: ${r.ms.toFixed(0)} ms`);
    assert.match(r.stdout, /^Usage: slimfit/m);
    assert.match(r.stdout, /doctor/);
    assert.ok(r.ms < 1000, `${r.ms.toFixed(0)} ms (npx itself is ~0.4 s of it; times vary under load)`);
  });

  it('a plain .mjs trains one epoch through the public API, and tfjs is the user\'s own instance', () => {
    py(`
import numpy as np
r = np.random.default_rng(0); y = r.integers(0, 4, 600).astype(np.uint8); x = (r.random((600, 8, 8)) * 60).astype(np.uint8)
for i in range(600): x[i, y[i] * 2:y[i] * 2 + 2, :] += 150
np.save('${join(app, 'x.npy')}', x); np.save('${join(app, 'y.npy')}', y)`);
    run(join(app, 'node_modules', '.bin', 'slimfit'), ['convert', '--x', 'x.npy', '--y', 'y.npy', '--split', 'train=0.8,test=0.2', '-q', 'store'], app);
    writeFileSync(join(app, 'train.mjs'), TRAIN_MJS);
    const out = JSON.parse(run('node', ['train.mjs'], app).stdout.trim().split('\n').find((l) => l.startsWith('{'))!);
    assert.equal(out.seen, 480);
    assert.equal(out.epochs, 1);
    assert.ok(Number.isFinite(out.loss) && out.accuracy > 0.5, JSON.stringify(out));
    assert.equal(out.sameClass, true, "buildModel's result is an instance of the user's tfl.LayersModel");
  });

  it('strict TypeScript using the public API type-checks against the installed .d.ts with the newest @types/node', () => {
    const tools = join(tmp.dir, 'tsc');
    newProject(tools);
    run('npm', ['install', 'typescript@~5.9', '@types/node@latest'], tools);
    writeFileSync(join(app, 'check.ts'), CHECK_TS);
    writeFileSync(join(app, 'bad.ts'), BAD_TS);
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', skipLibCheck: false, types: ['node'], typeRoots: [join(tools, 'node_modules', '@types')] },
      files: ['check.ts', 'bad.ts'],
    }));
    const r = spawnSync(join(tools, 'node_modules', '.bin', 'tsc'), ['-p', '.'], { cwd: app, env: ENV, encoding: 'utf8' });
    const errors = r.stdout.split('\n').filter((l) => /^\S.*\(\d+,\d+\): error TS\d+/.test(l));
    // TensorFlow.js's own .d.ts files do not pass skipLibCheck: false; slimfit's and the user's files must.
    const tfjs = errors.filter((l) => l.startsWith('node_modules/@tensorflow/'));
    const ours = errors.filter((l) => !tfjs.includes(l));
    console.log(`tsc ${run(join(tools, 'node_modules', '.bin', 'tsc'), ['-v'], app).stdout.trim()}: ${tfjs.length} errors inside @tensorflow's own .d.ts (not slimfit's)`);
    assert.deepEqual(ours.filter((l) => !l.startsWith('bad.ts')), [], r.stdout);
    assert.deepEqual(ours.map((l) => /^bad\.ts\((\d+),\d+\): error (TS\d+)/.exec(l)?.slice(1).join(' ')), ['4 TS2322', '5 TS2322', '6 TS2322'], r.stdout);
  });

  it('installed with --ignore-scripts, the prebuilt addons train, doctor says so; SLIMFIT_DISABLE=native and no prebuild at all still train', () => {
    const bare = join(tmp.dir, 'bare');
    newProject(bare);
    run('npm', ['install', '--ignore-scripts', tarball], bare);
    cpSync(join(app, 'store'), join(bare, 'store'), { recursive: true });
    writeFileSync(join(bare, 'train.mjs'), TRAIN_MJS);
    const doctor = JSON.parse(run('npx', ['slimfit', 'doctor', '--json'], bare).stdout) as { addons: Array<{ name: string; active: boolean; from: string | null }>; training: string };
    const tag = `prebuilds/${process.platform}-${process.arch}`;
    const engine = doctor.addons.find((a) => a.name === 'slimfit_engine')!;
    assert.deepEqual([engine.active, engine.from], [true, tag]);
    assert.match(doctor.training, new RegExp(`native engine \\(${tag}\\)`));
    for (const env of [{}, { SLIMFIT_DISABLE: 'native' }] as Array<Record<string, string>>) {
      const out = JSON.parse(run('node', ['train.mjs'], bare, env).stdout.trim().split('\n').find((l) => l.startsWith('{'))!);
      assert.equal(out.seen, 480, JSON.stringify(env));
      assert.ok(Number.isFinite(out.loss) && out.accuracy > 0.5, `${JSON.stringify(env)}: ${JSON.stringify(out)}`);
    }
    const off = run('npx', ['slimfit', 'doctor'], bare, { SLIMFIT_DISABLE: 'native' }).stdout;
    assert.match(off, /training runs on plain TensorFlow\.js/);
    // The install script, had npm run it: the prebuilds load, so it compiles nothing.
    const pkg = join(bare, 'node_modules', 'slimfit');
    const install = run('node', [join(pkg, 'native', 'build.mjs')], pkg);
    assert.match(install.stderr, new RegExp(`^slimfit: using the prebuilt native addons for ${process.platform}-${process.arch} \\(\\d of 6\\); nothing to compile( \\(slimfit_mpi, for mpirun, is built from source only: .*\\))?$`, 'm'));
    assert.equal(existsSync(join(pkg, 'build')), false, 'no build/ folder');
    // build/Release is tried first; a file there that does not load falls through to the prebuild, and doctor says so.
    mkdirSync(join(pkg, 'build', 'Release'), { recursive: true });
    writeFileSync(join(pkg, 'build', 'Release', 'slimfit_csv.node'), 'not an addon');
    const d2 = run('npx', ['slimfit', 'doctor'], bare).stdout;
    assert.match(d2, new RegExp(`slimfit_csv\\s+active, from ${tag} \\(did not load: build/Release/slimfit_csv\\.node: .+\\)`));
    assert.match(d2, new RegExp(`slimfit_engine\\s+active, from ${tag}$`, 'm'));
    rmSync(join(pkg, 'build'), { recursive: true });
    // A platform with neither a prebuild nor a compiler (e.g. darwin): training says so in one line and still runs.
    renameSync(join(pkg, 'prebuilds'), join(pkg, 'prebuilds.off'));
    try {
      const t = run('npx', ['slimfit', 'train', 'store', '--model', 'mlp', '--epochs', '1', '--out', join(bare, 'runs', 'plain')], bare);
      const lines = (t.stdout + t.stderr).split('\n').filter((l) => /native engine/.test(l));
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0], /native engine not built \(no slimfit_engine\.node in build\/Release or prebuilds\/[\w-]+\); using plain TensorFlow\.js \(`slimfit doctor` says more\)/);
      assert.match(t.stdout, /test accuracy/);
    } finally {
      renameSync(join(pkg, 'prebuilds.off'), join(pkg, 'prebuilds'));
    }
  });
});
