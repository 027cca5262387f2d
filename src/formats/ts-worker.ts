// Start a worker thread running a TypeScript module of this project (tsx is registered inside the worker first,
// because `execArgv: ['--import', 'tsx']` does not reach worker entry points on Node 20).
import { Worker, type ResourceLimits } from 'node:worker_threads';

/** A Worker that imports the module at `moduleUrl` (a file:// URL of a .ts file) with `workerData`. */
export function tsWorker(moduleUrl: string, workerData: unknown, resourceLimits?: ResourceLimits): Worker {
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(moduleUrl)}); })`;
  return new Worker(boot, { eval: true, workerData, resourceLimits });
}
