// `npm install` hook: compile the native engine with node-gyp; never fails the install (tfjs fallback stays).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const note = (msg) => process.stderr.write(`slimfit: ${msg}\n`);

if (process.env.SLIMFIT_SKIP_NATIVE) {
  note('native engine build skipped (SLIMFIT_SKIP_NATIVE); training uses plain TensorFlow.js');
  process.exit(0);
}

/** node-gyp's entry script: the one npm runs scripts with, else npm's bundled copy, else a global one. */
function findNodeGyp() {
  const cands = [process.env.npm_config_node_gyp];
  const npmDir = process.env.npm_execpath ? dirname(dirname(process.env.npm_execpath)) : null;
  if (npmDir) cands.push(join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = dirname(dirname(process.execPath));
  cands.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  cands.push('/usr/share/nodejs/npm/node_modules/node-gyp/bin/node-gyp.js');
  return cands.find((c) => c && existsSync(c)) ?? null;
}

const gyp = findNodeGyp();
if (!gyp) {
  note('node-gyp not found; native engine not built, training uses plain TensorFlow.js');
  process.exit(0);
}
// Headers from the running Node's own install (no download); node-gyp would otherwise fetch them.
const prefix = dirname(dirname(process.execPath));
const args = [gyp, 'rebuild', '-j', 'max'];
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const t0 = Date.now();
const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  process.stderr.write((r.stdout ?? '') + (r.stderr ?? ''));
  note('native engine build failed (see above); training uses plain TensorFlow.js');
  process.exit(0);
}
note(`native engine built in ${((Date.now() - t0) / 1000).toFixed(1)} s (build/Release/slimfit_engine.node)`);
