// `npm install` hook: make the native addons available. When the package's prebuilds for this platform load (an
// installed package), nothing to do; otherwise compile them with node-gyp into build/Release (a clone of the repo, or a
// platform without prebuilds). Never fails the install: every addon has a JavaScript / plain-tfjs fallback.
// `--force` (npm run build:native) compiles even when prebuilds load.
import { createRequire } from 'node:module';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDON_NAMES, findNodeGyp, gypRebuild } from './gyp.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const note = (msg) => process.stderr.write(`slimfit: ${msg}\n`);
const tag = `${process.platform}-${process.arch}`;

if (process.env.SLIMFIT_SKIP_NATIVE) {
  note('native addons not built (SLIMFIT_SKIP_NATIVE); training uses plain TensorFlow.js');
  process.exit(0);
}

/** Names of this platform's prebuilt addons that load in this Node, or null when there are none or one fails. */
function loadablePrebuilds() {
  const dir = join(root, 'prebuilds', tag);
  if (!existsSync(dir)) return null;
  const files = readdirSync(dir).filter((f) => f.endsWith('.node'));
  if (!files.includes('slimfit_engine.node')) return null;
  const require = createRequire(import.meta.url);
  try {
    for (const f of files) require(join(dir, f));
  } catch {
    return null;
  }
  return files.map((f) => f.replace(/\.node$/, ''));
}

// A clone of the repository (it has .git; a published package never does) always compiles: developers test
// build/Release, and prebuilds/ there is only the output of a local `npm pack`.
if (!process.argv.includes('--force') && !existsSync(join(root, '.git'))) {
  const pre = loadablePrebuilds();
  if (pre) {
    // slimfit_mpi is never prebuilt (the prebuilds must load without libmpi): say how to get it rather than count it.
    const missing = ADDON_NAMES.filter((n) => !pre.includes(n));
    const mpiOnly = missing.length === 1 && missing[0] === 'slimfit_mpi';
    note(`using the prebuilt native addons for ${tag} (${pre.length} of ${ADDON_NAMES.length - (mpiOnly ? 1 : 0)}); nothing to compile` +
      (mpiOnly ? ' (slimfit_mpi, for mpirun, is built from source only: `node native/build.mjs --force` in this package with Open MPI installed)' : ''));
    process.exit(0);
  }
}

const gyp = findNodeGyp();
if (!gyp) {
  note(`no prebuilt native addons for ${tag} and node-gyp not found: training uses plain TensorFlow.js (\`slimfit doctor\` says more)`);
  process.exit(0);
}
const r = gypRebuild(gyp, root);
if (!r.ok) {
  process.stderr.write(r.output);
  note(`compiling the native addons failed (see above): training uses plain TensorFlow.js (\`slimfit doctor\` says more)`);
  process.exit(0);
}
const built = ADDON_NAMES.filter((n) => existsSync(join(root, 'build', 'Release', `${n}.node`)));
const missing = ADDON_NAMES.filter((n) => !built.includes(n));
note(`native addons built in ${r.seconds.toFixed(1)} s into build/Release: ${built.join(', ')}${missing.length ? ` (not built, prerequisites missing: ${missing.join(', ')})` : ''}`);
