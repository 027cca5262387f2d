// Adapter: a Loader as a tf.data.Dataset of {xs, ys} for model.fitDataset (one loader epoch per dataset iteration).
import { type Tensor, tensor } from '@tensorflow/tfjs-core';
import { type Dataset, generator } from '@tensorflow/tfjs-data';
import type { TypedArray } from '../formats/dtype.ts';
import type { Loader } from './types.ts';

/** A typed array as something tfjs can hold: float32 stays, int32 stays (owned copies if in shared memory), others are converted. */
function tfValues(a: TypedArray): { values: Float32Array | Int32Array; dtype: 'float32' | 'int32' } {
  if (a instanceof Float32Array) return { values: a.buffer instanceof SharedArrayBuffer ? a.slice() : a, dtype: 'float32' };
  if (a instanceof Int32Array) return { values: a.buffer instanceof SharedArrayBuffer ? a.slice() : a, dtype: 'int32' };
  if (a instanceof Float64Array) return { values: Float32Array.from(a), dtype: 'float32' };
  if (a instanceof BigInt64Array || a instanceof BigUint64Array) return { values: Int32Array.from(a, (v) => Number(v)), dtype: 'int32' };
  return { values: Int32Array.from(a as ArrayLike<number>), dtype: 'int32' };
}

/**
 * Wrap `loader` as a tf.data.Dataset of `{xs, ys}`. Each iteration of the dataset (fitDataset does one per epoch)
 * runs one loader epoch; each batch becomes two new tensors that fitDataset disposes after the step.
 */
export function toTfDataset(loader: Loader): Dataset<{ xs: Tensor; ys: Tensor }> {
  return generator(async function* () {
    for await (const b of loader) {
      const x = tfValues(b.x);
      const xs = tensor(x.values, b.xShape, x.dtype);
      const y = tfValues(b.y);
      yield { xs, ys: tensor(y.values, b.yShape, y.dtype) };
    }
  } as unknown as () => AsyncIterator<{ xs: Tensor; ys: Tensor }>);
}
