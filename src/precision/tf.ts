// TensorFlow.js for the precision lab: the trainer's backend chooser (src/train/backend.ts) when present, else wasm/cpu.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-layers'; // registers the op gradients

let ready: Promise<string> | null = null;

/** Initialize the backend once; returns a one-line note saying which backend (and engine) is in use. */
export function initTf(): Promise<string> {
  ready ??= (async () => {
    const shared = join(dirname(fileURLToPath(import.meta.url)), '..', 'train', 'backend.ts');
    if (existsSync(shared)) {
      const mod = (await import(pathToFileURL(shared).href)) as { initBackend?: () => Promise<{ note: string }> };
      if (typeof mod.initBackend === 'function') return (await mod.initBackend()).note;
    }
    try {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const require = createRequire(import.meta.url);
      wasm.setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/');
      if (await tf.setBackend('wasm')) { await tf.ready(); return 'backend: wasm'; }
    } catch { /* fall through to cpu */ }
    await tf.setBackend('cpu');
    await tf.ready();
    return 'backend: cpu (wasm unavailable)';
  })();
  return ready;
}

export { tf };
