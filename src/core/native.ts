// Loading an optional native addon that `npm install` builds into build/Release (node-gyp), which SLIMFIT_DISABLE
// can turn off (src/core/config.ts). Callers get null when it is off, was not built, or does not load: they then use JS.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Feature, featureEnabled } from './config.ts';

const cache = new Map<string, unknown>();

/** build/Release/<name>.node, or null when missing, unloadable, or `feature` is turned off (SLIMFIT_DISABLE). Cached per process. */
export function loadAddon<T>(name: string, feature: Feature): T | null {
  if (cache.has(name)) return cache.get(name) as T | null;
  let addon: T | null = null;
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'Release', `${name}.node`);
  if (featureEnabled(feature) && existsSync(path)) {
    try { addon = createRequire(import.meta.url)(path) as T; } catch { addon = null; }
  }
  cache.set(name, addon);
  return addon;
}
