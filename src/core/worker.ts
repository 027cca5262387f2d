// Start a worker thread running a module of this package. From dist/ (the built package) the module is plain
// JavaScript and the worker imports it directly. From src/ (tests and tools running the TypeScript sources under
// tsx, a devDependency) the worker registers tsx first: `execArgv: ['--import', 'tsx']` does not reach worker entry
// points on Node 20. Measured: tsx in a worker costs ~35-45 MB of peak RSS and ~0.2 s of start per thread.
import { Worker, type ResourceLimits } from 'node:worker_threads';

/** True when this module runs compiled (dist/core/worker.js), so sibling modules are .js files too. */
const COMPILED = import.meta.url.endsWith('.js');

/**
 * The URL a worker should import: callers name their module's source (`new URL('./worker.ts', import.meta.url)`,
 * literal so test/layers.test.ts sees the import), which in dist/ is the .js file next to it.
 */
export function workerModuleUrl(moduleUrl: string): string {
  return COMPILED ? moduleUrl.replace(/\.ts$/, '.js') : moduleUrl;
}

/**
 * A Worker that runs the module at `moduleUrl` (a file:// URL) with `workerData`: a .js module directly, a .ts module
 * through tsx registered inside the worker (an `eval: true` boot, since tsx must be in place before the import).
 */
export function tsWorker(moduleUrl: string, workerData: unknown, resourceLimits?: ResourceLimits): Worker {
  const url = workerModuleUrl(moduleUrl);
  if (!url.endsWith('.ts')) return new Worker(new URL(url), { workerData, resourceLimits });
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const boot = `import(${tsx}).then((m) => { m.register(); return import(${JSON.stringify(url)}); })`;
  return new Worker(boot, { eval: true, workerData, resourceLimits });
}
