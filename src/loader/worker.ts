// Worker thread entry: fills batches into shared ring slots on request and reports back (errors included).
import { parentPort, workerData } from 'node:worker_threads';
import { isSlimfitError } from '../formats/errors.ts';
import { type ReaderInit, createReader } from './reader.ts';

/** A request from the loader: fill batch `seq` (positions start..start+n of epoch) into ring slot `slot`. */
export interface FillRequest { seq: number; epoch: number; start: number; n: number; slot: number }
/** The answer: done, or the error that stopped it. */
export interface FillReply { seq: number; error?: { message: string; slimfit: boolean; file?: string; hint?: string; stack?: string } }

const reader = createReader(workerData as ReaderInit);
parentPort!.on('message', (m: FillRequest | 'close') => {
  if (m === 'close') { reader.close(); parentPort!.close(); return; }
  let reply: FillReply;
  try {
    reader.fill(m.epoch, m.start, m.n, m.slot);
    reply = { seq: m.seq };
  } catch (e) {
    const err = e as Error & { file?: string; hint?: string };
    reply = { seq: m.seq, error: { message: err.message, slimfit: isSlimfitError(e), file: err.file, hint: err.hint, stack: err.stack } };
  }
  parentPort!.postMessage(reply);
});
