// TensorFlow.js for the precision lab: the trainer's backend chooser (src/train/backend.ts: engine, wasm or cpu).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-layers'; // registers the op gradients

let ready: Promise<string> | null = null;

/** Initialize the backend once; returns a one-line note saying which backend (and engine) is in use. */
export function initTf(): Promise<string> {
  ready ??= import('../src/train/backend.ts').then(async (m) => (await m.initBackend()).note);
  return ready;
}

export { tf };
