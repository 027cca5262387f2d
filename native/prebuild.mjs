// `npm pack` (prepack): compile the native addons portably into prebuilds/<platform>-<arch>/<name>.node, which the
// package ships (the node-gyp-build layout; src/core/native.ts looks there after build/Release). Portable: the kernels
// pick AVX-512/AVX2 at run time (no -march=native) and OpenBLAS, oneDNN and MPI are left out (SLIMFIT_NO_BLAS=1,
// SLIMFIT_NO_MPI=1), since a user may lack libopenblas, libdnnl or libmpi (MPI users build slimfit_mpi against their own MPI: `npm run build:native`). Compiled in a temporary copy of the sources, so this checkout's build/Release stays as it is.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDON_NAMES, findNodeGyp, gypRebuild } from './gyp.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tag = `${process.platform}-${process.arch}`;
const fail = (msg) => { process.stderr.write(`slimfit prebuild: error: ${msg}\n`); process.exit(1); };

const gyp = findNodeGyp();
if (!gyp) fail('node-gyp not found (it ships with npm); cannot build the prebuilt addons');
const work = mkdtempSync(join(tmpdir(), 'slimfit-prebuild-'));
try {
  cpSync(join(root, 'binding.gyp'), join(work, 'binding.gyp'));
  cpSync(join(root, 'native'), join(work, 'native'), { recursive: true });
  for (const layer of readdirSync(join(root, 'src'))) {
    const from = join(root, 'src', layer, 'native');
    if (existsSync(from)) cpSync(from, join(work, relative(root, from)), { recursive: true });
  }
  const r = gypRebuild(gyp, work, { SLIMFIT_NO_BLAS: '1', SLIMFIT_NO_MPI: '1' });
  if (!r.ok) fail(`node-gyp failed:\n${r.output}`);
  const out = join(root, 'prebuilds', tag);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const built = ADDON_NAMES.filter((n) => {
    try { cpSync(join(work, 'build', 'Release', `${n}.node`), join(out, `${n}.node`)); return true; } catch { return false; }
  });
  if (!built.includes('slimfit_engine')) fail('the engine addon did not build');
  const missing = ADDON_NAMES.filter((n) => !built.includes(n));
  process.stderr.write(`slimfit prebuild: ${relative(root, out)}: ${built.join(', ')} in ${r.seconds.toFixed(1)} s${missing.length ? ` (left out, prerequisites missing here: ${missing.join(', ')})` : ''}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
