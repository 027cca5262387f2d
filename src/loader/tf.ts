// Adapter: a Loader as a tf.data.Dataset of {xs, ys} for model.fitDataset (one loader epoch per dataset iteration).
import { type Tensor, tensor } from '@tensorflow/tfjs-core';
import { type Dataset, generator } from '@tensorflow/tfjs-data';
import type { TypedArray } from '../core/dtype.ts';
import type { Loader } from './types.ts';

/** Options for {@link toTfDataset}. */
export interface TfDatasetOptions {
  /** Always copy batch arrays into the tensors (default: only views into the loader's ring are copied; owned batches are used as they are). */
  copy?: boolean;
}

/** A typed array as something tfjs can hold: float32 stays, int32 stays (owned copies if in shared memory), others are converted. */
function tfValues(a: TypedArray, copy: boolean): { values: Float32Array | Int32Array; dtype: 'float32' | 'int32' } {
  if (a instanceof Float32Array) return { values: copy || a.buffer instanceof SharedArrayBuffer ? a.slice() : a, dtype: 'float32' };
  if (a instanceof Int32Array) return { values: copy || a.buffer instanceof SharedArrayBuffer ? a.slice() : a, dtype: 'int32' };
  if (a instanceof Float64Array) return { values: Float32Array.from(a), dtype: 'float32' };
  if (a instanceof BigInt64Array || a instanceof BigUint64Array) return { values: Int32Array.from(a, (v) => Number(v)), dtype: 'int32' };
  return { values: Int32Array.from(a as ArrayLike<number>), dtype: 'int32' };
}

/**
 * Wrap `loader` as a tf.data.Dataset of `{xs, ys}`. Each iteration of the dataset (fitDataset does one per epoch)
 * runs one loader epoch; each batch becomes two new tensors that fitDataset disposes after the step.
 *
 * @example
 * const loader = createLoader(ds.split('train'), { batchSize: 128, normalize: 'stats', oneHot: true });
 * await model.fitDataset(toTfDataset(loader), { epochs: 5 });
 */
export function toTfDataset(loader: Loader, opts: TfDatasetOptions = {}): Dataset<{ xs: Tensor; ys: Tensor }> {
  const copy = opts.copy ?? false;
  return generator(async function* () {
    for await (const b of loader) {
      const x = tfValues(b.x, copy);
      const xs = tensor(x.values, b.xShape, x.dtype);
      const y = tfValues(b.y, copy);
      yield { xs, ys: tensor(y.values, b.yShape, y.dtype) };
    }
  } as unknown as () => AsyncIterator<{ xs: Tensor; ys: Tensor }>);
}
