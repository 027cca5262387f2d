// Start a worker thread running a TypeScript module of this project. The worker imports the module compiled to
// JavaScript (bin/compile-cli.mjs, cached in node_modules/.cache/slimfit/workers and rebuilt when a source changes);
// where that cannot be built, or with SLIMFIT_TSX=1, it registers tsx first and imports the source (tsx inside the
// worker because `execArgv: ['--import', 'tsx']` does not reach worker entry points on Node 20).
// Measured: a CSV parser thread through tsx added ~35-45 MB of peak RSS and ~0.2 s of start.
import { Worker, type ResourceLimits } from 'node:worker_threads';

/** Code for an `eval: true` Worker that imports the module at `moduleUrl` (a file:// URL of a .ts file). */
function workerBoot(moduleUrl: string): string {
  const src = JSON.stringify(moduleUrl);
  const viaTsx = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return ${src}; })`;
  if (process.env.SLIMFIT_TSX) return `${viaTsx}.then((u) => import(u))`;
  const compiler = JSON.stringify(new URL('../../bin/compile-cli.mjs', import.meta.url).href);
  return `import(${compiler}).then((c) => c.compiledWorker(${src})).catch(() => ${viaTsx}).then((u) => import(u))`;
}

/** A Worker that imports the module at `moduleUrl` (a file:// URL of a .ts file) with `workerData`. */
export function tsWorker(moduleUrl: string, workerData: unknown, resourceLimits?: ResourceLimits): Worker {
  return new Worker(workerBoot(moduleUrl), { eval: true, workerData, resourceLimits });
}
