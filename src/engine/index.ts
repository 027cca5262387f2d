// The fast engine: native kernels (node-gyp addon: oneDNN, OpenBLAS or own SIMD GEMM, im2col convolutions, pooling, fused
// Adam) registered into TensorFlow.js's wasm backend, so tf.layers, autodiff and optimizers run unchanged.
//
// Contract with the trainer (src/train/backend.ts): after `await tf.setBackend('wasm'); await tf.ready()`, call
//   const { active, note } = installEngine(tf, 'wasm');
// and print `note`. When `active` is false everything keeps working on the plain backend (addon not built,
// turned off by an option or SLIMFIT_DISABLE=engine, or a backend other than wasm). Calling it again is harmless. `uninstallEngine` restores
// the backend's own kernels (used by tests and benchmarks to compare both in one process).
//
// Environment (read by src/core/config.ts, handed to the addon by ./addon.ts): SLIMFIT_DISABLE=engine (plain tfjs),
// SLIMFIT_DISABLE=fused-conv, SLIMFIT_GEMM, SLIMFIT_THREADS, SLIMFIT_ISA; see the README's table.
// Build: `npm install` runs native/build.mjs (node-gyp); `npm run build:native` rebuilds.
import type * as tfc from '@tensorflow/tfjs-core';
import { disabledBy, featureEnabled } from '../core/config.ts';
import { loadAddon } from './addon.ts';
import { patchAdam } from './adam.ts';
import { isWasmBackend, makeKernels } from './kernels.ts';
import { patchFusedConv } from './fused-conv.ts';

export { gemmModeLabel, loadAddon } from './addon.ts';
export type { Addon, AddonInfo } from './addon.ts';

type Tf = typeof tfc;

/** Kernels the engine replaces (or adds: the wasm backend has no Conv2DBackpropFilter). */
export const ENGINE_KERNELS = ['BatchMatMul', '_FusedMatMul', 'Conv2D', 'FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'MaxPool', 'MaxPoolGrad', 'Sum',
  'Identity', 'Cast', 'Relu', 'Step', 'Add', 'Multiply', 'SlimfitConv2DBiasAct', 'SlimfitReluGradBias'] as const;

/** Result of installEngine: whether the fast kernels are active, and a one-line note to print. */
export interface EngineStatus { active: boolean; note: string }

interface Installed { backendName: string; originals: Map<string, tfc.KernelConfig | undefined>; adamOn: boolean }
let installed: Installed | null = null;

/** Options of {@link installEngine}; each defaults to on unless SLIMFIT_DISABLE names it. */
export interface EngineOptions {
  /** Install the engine at all (false: plain tfjs). Default: on unless SLIMFIT_DISABLE names `engine` or `native`. */
  engine?: boolean;
  /**
   * Keep `tf.fused.conv2d` one native kernel with its own gradient in training (false: tfjs's split into conv, add and
   * relu). Default: on unless SLIMFIT_DISABLE names `fused-conv` or `native`.
   */
  fusedConv?: boolean;
}

/** Register the native kernels into the named, already-initialized backend (only 'wasm' is supported). */
export function installEngine(tf: Tf, backendName: string, opts: EngineOptions = {}): EngineStatus {
  if (opts.engine === false) return { active: false, note: 'fast engine turned off by the caller; using plain TensorFlow.js' };
  if (opts.engine === undefined && !featureEnabled('engine')) {
    return { active: false, note: `fast engine disabled by ${disabledBy('engine')}; using plain TensorFlow.js` };
  }
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
  const fusedConv = opts.fusedConv ?? featureEnabled('fused-conv');
  patchFusedConv(tf, backendName, () => installed === state && fusedConv);
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
export { bf16Kernel, denseTrainStep, MATMUL_PRECISIONS } from './dense-step.ts';
export { convTrainStep } from './conv-step.ts';
export type { DenseStep, DenseStepResult, MatmulPrecision } from './dense-step.ts';
