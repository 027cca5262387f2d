// Moving a tensor's data in tfjs's wasm heap to a 64-byte boundary (one cache line, one AVX-512 vector). The heap's
// allocator only aligns to 8 bytes, so a weight or moment the fused steps update in place could start mid-line: every
// vector load and store of Adam's streams then touches two lines.
import type * as tfc from '@tensorflow/tfjs-core';

/** The parts of tfjs's wasm backend (and its module) that a move touches. */
interface AlignableBackend {
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } | undefined };
  wasm: {
    HEAPU8: Uint8Array;
    _malloc(bytes: number): number;
    _free(offset: number): void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
  disposeData(dataId: object, force?: boolean): boolean;
}

const LINE = 64;
/** Per backend: the allocation each moved tensor's data really starts at (what `_free` must get back). */
const moved = new WeakMap<object, WeakMap<object, number>>();

function canMove(be: unknown): be is AlignableBackend {
  const b = be as Partial<AlignableBackend> | null;
  return !!b?.wasm && typeof b.wasm._malloc === 'function' && typeof b.wasm._free === 'function' &&
    typeof b.wasm.tfjs?.registerTensor === 'function' && typeof b.wasm.tfjs?.disposeData === 'function' &&
    typeof b.disposeData === 'function' && !!b.dataIdMap;
}

/**
 * The backend's own `disposeData`, wrapped once so that a moved tensor hands its real allocation back to `_free`.
 */
function rawStarts(be: AlignableBackend): WeakMap<object, number> {
  let raw = moved.get(be);
  if (raw) return raw;
  const starts = new WeakMap<object, number>();
  raw = starts;
  moved.set(be, starts);
  const dispose = be.disposeData.bind(be);
  be.disposeData = (dataId: object, force?: boolean): boolean => {
    // (the lookup of a tensor the backend does not hold would pull its data over first: only moved ones are looked up)
    const start = starts.get(dataId);
    if (start === undefined) return dispose(dataId, force);
    const d = be.dataIdMap.get(dataId);
    if (!d) return dispose(dataId, force);
    const aligned = d.memoryOffset;
    d.memoryOffset = start;
    const freed = dispose(dataId, force);
    if (freed) starts.delete(dataId);
    else d.memoryOffset = aligned;
    return freed;
  };
  return starts;
}

/**
 * Move each float32 tensor's data in the wasm heap to a 64-byte boundary, unless it is there already: a new
 * allocation, the values copied, the old one freed, the tensor re-registered with the backend's kernels at its new
 * place (the same tensor id, so every tensor and variable that shares the data follows). A backend this cannot drive
 * (not tfjs's wasm backend as this version knows it) is left alone; the fused steps then run on the data where it is.
 *
 * @example
 * alignTensors(tf.backend(), [kernel, bias, m, v]); // before the first in-place Adam step on them
 */
export function alignTensors(be: unknown, tensors: readonly tfc.Tensor[]): void {
  if (!canMove(be)) return;
  for (const t of tensors) {
    const d = be.dataIdMap.get(t.dataId);
    if (!d || d.memoryOffset % LINE === 0 || t.dtype !== 'float32' || t.size === 0) continue;
    const bytes = 4 * t.size;
    const start = be.wasm._malloc(bytes + LINE) >>> 0;
    if (start === 0) continue; // no room: keep the data where it is
    const heap = be.wasm.HEAPU8; // read after _malloc, which may have grown the heap
    const at = Math.ceil(start / LINE) * LINE;
    heap.copyWithin(at, d.memoryOffset, d.memoryOffset + bytes);
    const starts = rawStarts(be);
    be.wasm._free(d.memoryOffset);  // never a moved one's: those start on a line and are skipped above
    be.wasm.tfjs.disposeData(d.id);
    be.wasm.tfjs.registerTensor(d.id, t.size, at);
    d.memoryOffset = at;
    starts.set(t.dataId, start);
  }
}
