// Loading an optional native addon that `npm install` builds into build/Release (node-gyp), with an environment
// switch to turn it off. Callers get null when it is off, was not built, or does not load: they then use JS.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cache = new Map<string, unknown>();

/** build/Release/<name>.node, or null when missing, unloadable, or `envVar` is off/0/false/no. Cached per process. */
export function loadAddon<T>(name: string, envVar: string): T | null {
  if (cache.has(name)) return cache.get(name) as T | null;
  let addon: T | null = null;
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'Release', `${name}.node`);
  if (!['off', '0', 'false', 'no'].includes((process.env[envVar] ?? '').toLowerCase()) && existsSync(path)) {
    try { addon = createRequire(import.meta.url)(path) as T; } catch { addon = null; }
  }
  cache.set(name, addon);
  return addon;
}
