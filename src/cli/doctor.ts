// `slimfit doctor`: which native addons are active and from where (or why not), the CPU features the engine uses,
// and what training therefore runs on. `--json` for scripts and CI.
import type { Command } from 'commander';
import { ADDONS, type AddonName, addonFolders, addonStatus, PACKAGE_ROOT, PLATFORM_TAG, whyOff } from '../core/native.ts';
import { disabledBy, FEATURES, featureEnabled } from '../core/config.ts';
import { loadAddon } from '../engine/index.ts';
import { VERSION } from './index.ts';

/** What `doctor --json` prints. */
export interface DoctorReport {
  slimfit: string;
  node: string;
  platform: string;
  packageRoot: string;
  /** Folders searched for each addon, in order, relative to packageRoot. */
  searched: string[];
  addons: Array<{ name: AddonName; role: string; active: boolean; from: string | null; path: string | null; off: string | null; why: string | null; loadErrors: string[] }>;
  /** The engine's CPU dispatch, when the engine addon is loaded. */
  engine: { isa: string; avx512: boolean; avx2: boolean; bf16: boolean; vnni: boolean; openblas: boolean; threads: number } | null;
  /** One line: what training runs on. */
  training: string;
}

/** Collect the report (loads every addon that is not turned off). */
export function doctorReport(): DoctorReport {
  const addons = (Object.keys(ADDONS) as AddonName[]).map((name) => {
    const s = addonStatus(name);
    return { name, role: FEATURES[s.feature], active: s.module !== null, from: s.from, path: s.path, off: s.off, why: s.module ? null : whyOff(s), loadErrors: s.errors };
  });
  const { addon, note } = loadAddon();
  let engine: DoctorReport['engine'] = null;
  if (addon) {
    const i = addon.info();
    engine = { isa: i.isa, avx512: i.isa === 'avx512', avx2: i.isa === 'avx512' || i.isa === 'avx2', bf16: i.bf16, vnni: i.vnni, openblas: i.blas === 'openblas', threads: i.threads };
  }
  const training = !featureEnabled('engine') ? `plain TensorFlow.js (wasm backend): the engine is turned off by ${disabledBy('engine')}`
    : addon ? `the native engine (${addons[0].from}) under TensorFlow.js's wasm backend` : `plain TensorFlow.js (wasm backend): ${note}`;
  return {
    slimfit: VERSION, node: process.version, platform: PLATFORM_TAG, packageRoot: PACKAGE_ROOT, searched: addonFolders(), addons, engine, training,
  };
}

const yes = (b: boolean) => (b ? 'yes' : 'no');

/** The report as lines for people. */
export function formatDoctor(r: DoctorReport): string {
  const lines = [`slimfit ${r.slimfit}, Node ${r.node}, ${r.platform}`, `native addons (searched ${r.searched.join(', then ')} in ${r.packageRoot}):`];
  const w = Math.max(...r.addons.map((a) => a.name.length));
  for (const a of r.addons) {
    // A file tried before the one that loaded (e.g. a stale build/Release) is worth knowing about.
    const skipped = a.active && a.loadErrors.length ? ` (did not load: ${a.loadErrors.join('; ')})` : '';
    lines.push(`  ${a.name.padEnd(w)}  ${a.active ? `active, from ${a.from}${skipped}` : `off: ${a.why}`}`);
  }
  const e = r.engine;
  lines.push(e
    ? `CPU features the engine uses: ${e.isa} kernels (AVX-512 ${yes(e.avx512)}, AVX2 ${yes(e.avx2)}, AVX-512 BF16 ${yes(e.bf16)}, AVX-512 VNNI ${yes(e.vnni)}); OpenBLAS linked: ${yes(e.openblas)}; ${e.threads} thread${e.threads === 1 ? '' : 's'}`
    : 'CPU features: unknown (the engine addon is not loaded)');
  lines.push(`training runs on ${r.training}`);
  return lines.join('\n') + '\n';
}

/** Register `doctor`. */
export function register(program: Command): void {
  program.command('doctor')
    .description('show which native addons are active and from where (or why not), the CPU features used, and what training runs on')
    .option('--json', 'print the report as JSON')
    .action((o: { json?: boolean }) => {
      const r = doctorReport();
      process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatDoctor(r));
    });
}
