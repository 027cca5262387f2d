// Worker thread entry: fills batches into shared ring slots on request and reports back (errors included).
import { parentPort, workerData } from 'node:worker_threads';
import { isSlimfitError } from '../core/errors.ts';
import { type ReaderInit, createReader } from './reader.ts';

/**
 * A request from the loader: fill batch `seq` (positions start..start+n of epoch) into ring slot `slot`, or, with
 * `own` (bytes of x and of y), into fresh buffers that are transferred back and then belong to the caller.
 */
export interface FillRequest {
  seq: number; epoch: number; start: number; n: number; slot: number; own?: readonly [number, number];
  /** With `own`: released buffers of exactly those sizes (transferred here) to fill instead of fresh ones. */
  reuse?: readonly [ArrayBuffer, ArrayBuffer];
}
/** The answer for one request: done (with the owned buffers if asked for), or the error that stopped it. */
export interface FillReply { seq: number; x?: ArrayBuffer; y?: ArrayBuffer; error?: { message: string; slimfit: boolean; file?: string; hint?: string; stack?: string } }

const reader = createReader(workerData as ReaderInit);

/** A fresh transferable ArrayBuffer of `bytes` whose contents are not zeroed (never from node's shared Buffer pool). */
function unzeroed(bytes: number): ArrayBuffer {
  const b = Buffer.allocUnsafeSlow(bytes);
  return b.byteOffset === 0 && b.buffer.byteLength === bytes ? b.buffer : new ArrayBuffer(bytes);
}
// Requests come in groups (one message per group each way keeps the cross-thread cost per batch low).
parentPort!.on('message', (m: FillRequest[] | 'close') => {
  if (m === 'close') { reader.close(); parentPort!.close(); return; }
  const replies: FillReply[] = [];
  const transfer: ArrayBuffer[] = [];
  let failed: FillReply['error'] | undefined;
  for (const r of m) {
    if (failed) { replies.push({ seq: r.seq, error: failed }); continue; }
    try {
      if (r.own) {
        // Owned batches are filled here and moved to the caller: the main thread never copies (or even touches) them.
        // x: uninitialized memory when the native gather overwrites all of it (zeroing fresh batches cost ~0.15 us/row).
        const back = r.reuse && r.reuse[0].byteLength === r.own[0] && r.reuse[1].byteLength === r.own[1] ? r.reuse : null;
        if (back && !reader.gathersX) new Uint8Array(back[0]).fill(0);
        if (back) new Uint8Array(back[1]).fill(0);
        const x = back ? back[0] : reader.gathersX ? unzeroed(r.own[0]) : new ArrayBuffer(r.own[0]), y = back ? back[1] : new ArrayBuffer(r.own[1]);
        reader.fill(r.epoch, r.start, r.n, r.slot, [new Uint8Array(x), new Uint8Array(y)]);
        replies.push({ seq: r.seq, x, y });
        transfer.push(x, y);
      } else {
        reader.fill(r.epoch, r.start, r.n, r.slot);
        replies.push({ seq: r.seq });
      }
    } catch (e) {
      const err = e as Error & { file?: string; hint?: string };
      failed = { message: err.message, slimfit: isSlimfitError(e), file: err.file, hint: err.hint, stack: err.stack };
      replies.push({ seq: r.seq, error: failed });
    }
  }
  parentPort!.postMessage(replies, transfer);
});
