// Running node-gyp for native/build.mjs (install) and native/prebuild.mjs (npm pack): finding it, and compiling
// against the running Node's own headers (no download).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Every addon binding.gyp can build (the last three only when zlib / node's OpenSSL headers / mpicc are there). */
export const ADDON_NAMES = ['slimfit_engine', 'slimfit_gather', 'slimfit_mem', 'slimfit_csv', 'slimfit_png', 'slimfit_sha256', 'slimfit_mpi'];

/** node-gyp's entry script: the one npm runs scripts with, else npm's bundled copy, else a global one. */
export function findNodeGyp() {
  const cands = [process.env.npm_config_node_gyp];
  const npmDir = process.env.npm_execpath ? dirname(dirname(process.env.npm_execpath)) : null;
  if (npmDir) cands.push(join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = dirname(dirname(process.execPath));
  cands.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  cands.push('/usr/share/nodejs/npm/node_modules/node-gyp/bin/node-gyp.js');
  return cands.find((c) => c && existsSync(c)) ?? null;
}

/** `node-gyp rebuild` in `cwd` with extra `env`; returns { ok, output, seconds }. */
export function gypRebuild(gyp, cwd, env = {}) {
  const prefix = dirname(dirname(process.execPath));
  const args = [gyp, 'rebuild', '-j', 'max'];
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  return { ok: r.status === 0, output: (r.stdout ?? '') + (r.stderr ?? ''), seconds: (Date.now() - t0) / 1000 };
}
