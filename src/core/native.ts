// The one place slimfit finds and loads its optional native addons, in node-gyp-build's order: build/Release/<name>.node
// (compiled on this machine by `npm install`) first, then prebuilds/<platform>-<arch>/<name>.node (shipped in the npm
// package, built portably at `npm pack`). node-gyp-build itself loads one addon per package; slimfit has seven.
// SLIMFIT_DISABLE turns each off (src/core/config.ts). Callers get null when an addon is off, missing, or does not
// load: they then use their JavaScript fallback. `slimfit doctor` prints addonStatus() of each.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Feature, featureEnabled, withoutOpenMpBinding } from './config.ts';

/** The package's root folder: src/core/native.ts and dist/core/native.js both sit two levels below it. */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Every addon binding.gyp builds, with the SLIMFIT_DISABLE feature that turns it off. */
export const ADDONS = {
  slimfit_engine: 'engine',
  slimfit_gather: 'gather',
  slimfit_mem: 'trim',
  slimfit_csv: 'csv',
  slimfit_png: 'png',
  slimfit_sha256: 'sha256',
  slimfit_mpi: 'mpi',
} as const satisfies Record<string, Feature>;
export type AddonName = keyof typeof ADDONS;

/** This platform's prebuild folder name, as prebuildify and node-gyp-build spell it. */
export const PLATFORM_TAG = `${process.platform}-${process.arch}`;

/** Where an addon was found or why it is off. */
export interface AddonStatus {
  name: AddonName;
  feature: Feature;
  /** The loaded module, or null. */
  module: unknown;
  /** Where it was loaded from, relative to the package root (e.g. 'build/Release' or 'prebuilds/linux-x64'). */
  from: string | null;
  /** Absolute path of the loaded file. */
  path: string | null;
  /** Why it is off: 'disabled' (SLIMFIT_DISABLE), 'missing' (no file) or 'failed' (a file did not load). */
  off: 'disabled' | 'missing' | 'failed' | null;
  /** For 'failed': the first line of each load error, with its file. */
  errors: string[];
}

/** The folders searched, in order, relative to the package root. */
export function addonFolders(): string[] {
  return [join('build', 'Release'), join('prebuilds', PLATFORM_TAG)];
}

const cache = new Map<AddonName, AddonStatus>();

/** Find and load `name` (cached per process; a load failure is recorded, not thrown; a malformed SLIMFIT_DISABLE throws its SlimfitError). */
export function addonStatus(name: AddonName): AddonStatus {
  const hit = cache.get(name);
  if (hit) return hit;
  const feature: Feature = ADDONS[name];
  const s: AddonStatus = { name, feature, module: null, from: null, path: null, off: null, errors: [] };
  if (!featureEnabled(feature)) {
    s.off = 'disabled';
  } else {
    const require = createRequire(import.meta.url);
    for (const folder of addonFolders()) {
      const path = join(PACKAGE_ROOT, folder, `${name}.node`);
      if (!existsSync(path)) continue;
      try {
        s.module = withoutOpenMpBinding(() => require(path));
        s.from = folder;
        s.path = path;
        break;
      } catch (e) {
        s.errors.push(`${join(folder, `${name}.node`)}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    if (!s.module) s.off = s.errors.length ? 'failed' : 'missing';
  }
  cache.set(name, s);
  return s;
}

/** The addon's module, or null when it is off, missing or fails to load (the caller then uses JavaScript). */
export function loadAddon<T>(name: AddonName): T | null {
  return addonStatus(name).module as T | null;
}

/** One line saying why `name` is off (for notes and `slimfit doctor`); '' when it is loaded. */
export function whyOff(s: AddonStatus): string {
  switch (s.off) {
    case null: return '';
    case 'disabled': return `turned off by SLIMFIT_DISABLE (it names ${s.feature} or native)`;
    case 'missing': return `not built (no ${s.name}.node in build/Release or prebuilds/${PLATFORM_TAG})`;
    case 'failed': return `failed to load (${s.errors.join('; ')})`;
  }
}
