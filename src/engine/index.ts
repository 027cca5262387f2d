// The fast engine: native kernels (node-gyp addon: OpenBLAS or own SIMD GEMM, im2col convolutions, pooling, fused
// Adam) registered into TensorFlow.js's wasm backend, so tf.layers, autodiff and optimizers run unchanged.
//
// Contract with the trainer (src/train/backend.ts): after `await tf.setBackend('wasm'); await tf.ready()`, call
//   const { active, note } = installEngine(tf, 'wasm');
// and print `note`. When `active` is false everything keeps working on the plain backend (addon not built,
// SLIMFIT_ENGINE=off, or a backend other than wasm). Calling it again is harmless. `uninstallEngine` restores
// the backend's own kernels (used by tests and benchmarks to compare both in one process).
//
// Environment: SLIMFIT_ENGINE=off (use plain tfjs), SLIMFIT_GEMM=own|openblas (GEMM choice; default own on
// AVX2/AVX-512), SLIMFIT_THREADS=n (native threads; default all), SLIMFIT_ISA=avx2|generic (cap the SIMD level).
// Build: `npm install` runs native/build.mjs (node-gyp; SLIMFIT_SKIP_NATIVE=1 skips it, SLIMFIT_NO_BLAS=1 builds
// without OpenBLAS); `npm run build:native` rebuilds.
import type * as tfc from '@tensorflow/tfjs-core';
import { loadAddon } from './addon.ts';
import { patchAdam } from './adam.ts';
import { isWasmBackend, makeKernels } from './kernels.ts';
import { patchFusedConv } from './fused-conv.ts';

export { loadAddon } from './addon.ts';
export type { Addon, AddonInfo } from './addon.ts';

type Tf = typeof tfc;

/** Kernels the engine replaces (or adds: the wasm backend has no Conv2DBackpropFilter). */
export const ENGINE_KERNELS = ['BatchMatMul', '_FusedMatMul', 'Conv2D', 'FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'MaxPool', 'MaxPoolGrad', 'Sum',
  'Identity', 'Cast', 'Relu', 'Step', 'Add', 'Multiply', 'SlimfitConv2DBiasAct', 'SlimfitReluGradBias'] as const;

/** Result of installEngine: whether the fast kernels are active, and a one-line note to print. */
export interface EngineStatus { active: boolean; note: string }

interface Installed { backendName: string; originals: Map<string, tfc.KernelConfig | undefined>; adamOn: boolean }
let installed: Installed | null = null;

/** True when the environment disables the engine (SLIMFIT_ENGINE=off|0|false). */
export function engineDisabledByEnv(): boolean {
  return ['off', '0', 'false', 'no'].includes((process.env.SLIMFIT_ENGINE ?? '').toLowerCase());
}

/** True when SLIMFIT_FUSED_CONV=off keeps tfjs's own split of fused conv2d into conv, add and relu in training. */
export function fusedConvDisabledByEnv(): boolean {
  return ['off', '0', 'false', 'no'].includes((process.env.SLIMFIT_FUSED_CONV ?? '').toLowerCase());
}

/** Register the native kernels into the named, already-initialized backend (only 'wasm' is supported). */
export function installEngine(tf: Tf, backendName: string): EngineStatus {
  if (engineDisabledByEnv()) return { active: false, note: 'fast engine disabled by SLIMFIT_ENGINE=off; using plain TensorFlow.js' };
  if (installed) {
    if (installed.backendName === backendName) return { active: true, note: loadAddon().note };
    return { active: false, note: `fast engine already installed into '${installed.backendName}'` };
  }
  if (backendName !== 'wasm') return { active: false, note: `fast engine supports the wasm backend only (not '${backendName}'); using plain TensorFlow.js` };
  const { addon, note } = loadAddon();
  if (!addon) return { active: false, note: `${note}; using plain TensorFlow.js (\`slimfit doctor\` says more)` };
  let backend: unknown;
  try {
    backend = tf.engine().findBackend(backendName);
  } catch {
    backend = null;
  }
  if (!isWasmBackend(backend)) return { active: false, note: `backend '${backendName}' is not initialized; using plain TensorFlow.js` };
  const originals = new Map<string, tfc.KernelConfig | undefined>();
  const origFuncs: Record<string, tfc.KernelFunc> = {};
  for (const name of ENGINE_KERNELS) {
    const cfg = tf.getKernel(name, backendName);
    originals.set(name, cfg);
    if (cfg) origFuncs[name] = cfg.kernelFunc;
  }
  const kernels = makeKernels(tf, addon, origFuncs);
  for (const name of ENGINE_KERNELS) {
    if (originals.get(name)) tf.unregisterKernel(name, backendName);
    tf.registerKernel({ kernelName: name, backendName, kernelFunc: kernels[name] });
  }
  installed = { backendName, originals, adamOn: true };
  const state = installed;
  patchAdam(tf, addon, backendName, () => installed === state && state.adamOn);
  patchFusedConv(tf, backendName, () => installed === state && !fusedConvDisabledByEnv());
  return { active: true, note };
}

/** Restore the backend's own kernels (and the library's Adam update). */
export function uninstallEngine(tf: Tf): void {
  if (!installed) return;
  const { backendName, originals } = installed;
  for (const [name, cfg] of originals) {
    tf.unregisterKernel(name, backendName);
    if (cfg) tf.registerKernel(cfg);
  }
  installed = null;
}

/** Whether the engine's kernels are currently registered. */
export function engineActive(): boolean {
  return installed !== null;
}

export { adamStats } from './adam.ts';
export { denseTrainStep, fusedStepDisabledByEnv } from './dense-step.ts';
export type { DenseStep, DenseStepResult } from './dense-step.ts';
