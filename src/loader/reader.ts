// Fills one batch: computes its samples, reads them with synchronous positioned reads (sorted, coalesced), transforms them.
// Runs inside worker threads (or on the main thread with workers: 0); everything it needs arrives as plain data.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { dtypeSize, swapBytes } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { parseNpyHeader } from '../formats/npy.ts';
import { type Part, type PartFile, partOf } from './layout.ts';
import { type ClassTable, type PlanConfig, createPlan } from './plan.ts';
import { type MapHandle, gatherAddon } from './native.ts';
import { type RawView, type TransformSpec, createTransformer, rawView } from './transform.ts';

/** Everything a reader needs (structured-clonable; the shared buffers are shared, not copied). */
export interface ReaderInit {
  parts: Part[];
  plan: PlanConfig;
  classes?: { offsets: Float64Array; ids: Float64Array | Uint32Array };
  /** All labels' raw bytes, when they are small enough to keep (saves one read per sample). */
  labels?: Uint8Array;
  spec: TransformSpec;
  batchSize: number;
  /** Ring slots the batches are written into. */
  slots: SharedArrayBuffer[];
  /** How often open files are re-checked for deletion/truncation (ms). */
  checkMs: number;
  /** Most files kept open at once. */
  maxOpen: number;
  /** 'mmap': gather rows from memory-mapped x files with the native addon when it is built (else positioned reads). */
  io?: 'pread' | 'mmap';
  /** Use the native addon when it is built (default true); false = plain JS reads. */
  native?: boolean;
}

/** Byte layout of a slot: x output at 0, y output after it (8-aligned). */
export function slotLayout(spec: TransformSpec, batchSize: number): { yOffset: number; bytes: number } {
  const yOffset = Math.ceil((batchSize * spec.xOutBytes) / 8) * 8;
  return { yOffset, bytes: yOffset + Math.max(8, batchSize * spec.yOutBytes) };
}

interface OpenFile { fd: number; file: PartFile; dataStart: number; rowBytes: number; swap: number; size: number; used: number }

/** Fills batches into slots; call `fill` for each batch, `close` at the end. */
export interface BatchReader {
  /** Fill batch positions start..start+n of `epoch` into ring slot `slot`, or into `into` (x bytes, y bytes) when given. */
  fill(epoch: number, start: number, n: number, slot: number, into?: readonly [Uint8Array, Uint8Array]): void;
  /** True when fill writes every x byte of its n samples with one native gather (so `into` x need not be zeroed first). */
  readonly gathersX: boolean;
  close(): void;
}

/** Create a reader over `init` (opens files lazily, checks each file's header and size on open). */
export function createReader(init: ReaderInit): BatchReader {
  const { parts, spec, batchSize: B } = init;
  const classes: ClassTable | undefined = init.classes;
  const plan = createPlan(init.plan, classes);
  const xRow = spec.x.shape.reduce((p, d) => p * d, 1) * dtypeSize(spec.x.dtype);
  const yRow = spec.y.shape.reduce((p, d) => p * d, 1) * dtypeSize(spec.y.dtype);
  const layout = slotLayout(spec, B);
  const outputs = init.slots.map((sab) => [new Uint8Array(sab, 0, B * spec.xOutBytes), new Uint8Array(sab, layout.yOffset, B * spec.yOutBytes)] as const);
  const t = createTransformer(spec, (id) => (id < 0 ? `a sample of the current shuffle window` : `sample ${id} of ${parts[partOf(parts, id)].y.name}`));
  // Scratch for raw rows (8-aligned for every dtype).
  const xScratch = rawView(spec.x.dtype, new Uint8Array(new ArrayBuffer(Math.max(8, B * xRow))));
  const yScratch = rawView(spec.y.dtype, new Uint8Array(new ArrayBuffer(Math.max(8, B * yRow))));
  const labels = init.labels ? rawView(spec.y.dtype, init.labels) : null;
  const ids = new Float64Array(B);
  const order = new Uint32Array(B);
  const keys = new Float64Array(B);
  const stored = parts.length > 0 ? parts[parts.length - 1].start + parts[parts.length - 1].samples : 0;
  const packable = (stored + 1) * B <= Number.MAX_SAFE_INTEGER;
  /** order[0..n) = batch positions by ascending id (ties by position). Packs id * n + position into one exact double
   *  and sorts those without a comparator (numeric typed-array sort runs natively: ~8x faster than a comparator). */
  const sortByIds = (n: number, sorted: Uint32Array) => {
    if (!packable) { sorted.sort((i, j) => ids[i] - ids[j] || i - j); return; }
    for (let k = 0; k < n; k++) keys[k] = ids[k] * n + k;
    const ks = keys.subarray(0, n).sort();
    for (let r = 0; r < n; r++) sorted[r] = ks[r] % n;
  };
  const slotOf = new Uint32Array(B);
  const open = new Map<number, OpenFile>();
  let lastCheck = Date.now();

  const fail = (f: PartFile, msg: string, offset?: number): never => {
    throw new SlimfitError(`${f.name}: ${msg}`, { offset, hint: f.hint });
  };

  let tick = 0;
  const openFile = (pi: number, field: 'x' | 'y'): OpenFile => {
    const key = 2 * pi + (field === 'y' ? 1 : 0);
    const hit = open.get(key);
    if (hit) { hit.used = ++tick; return hit; }
    const f = parts[pi][field], rows = parts[pi].samples;
    let fd: number;
    try { fd = openSync(f.path, 'r'); } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return fail(f, code === 'ENOENT' ? 'is missing (deleted while the loader was using it?)' : `cannot be opened (${code})`);
    }
    try {
      const size = fstatSync(fd).size;
      if (f.fileBytes !== undefined && size !== f.fileBytes) fail(f, `is ${size} bytes but should be ${f.fileBytes} (truncated or replaced)`);
      const head = Buffer.alloc(Math.min(65536, Math.max(0, size - f.base)));
      readSync(fd, head, 0, head.length, f.base);
      const h = parseNpyHeader(head, f.name);
      const want = field === 'x' ? spec.x : spec.y;
      const rowShape = h.shape.slice(1);
      if (h.dtype !== want.dtype || rowShape.length !== want.shape.length || rowShape.some((d, i) => d !== want.shape[i]) || (h.shape[0] ?? 1) !== rows) {
        fail(f, `holds ${h.shape[0]} samples of ${h.dtype} [${rowShape.join(',')}] but ${rows} of ${want.dtype} [${want.shape.join(',')}] were expected`);
      }
      const rowBytes = field === 'x' ? xRow : yRow;
      const dataStart = f.base + h.dataOffset;
      if (dataStart + rows * rowBytes > size) fail(f, `ends early: ${rows} samples need ${dataStart + rows * rowBytes} bytes, the file has ${size}`);
      const of: OpenFile = { fd, file: f, dataStart, rowBytes, swap: h.bigEndian ? dtypeSize(h.dtype) : 0, size, used: ++tick };
      if (open.size >= init.maxOpen) {
        let oldest = -1, least = Infinity;
        for (const [k, o] of open) if (o.used < least) { least = o.used; oldest = k; }
        closeSync(open.get(oldest)!.fd);
        open.delete(oldest);
      }
      open.set(key, of);
      return of;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  };

  /** Re-check every open file: deleted (no links left) or size changed is an error naming the file. */
  const checkOpen = () => {
    for (const [key, of] of open) {
      const st = fstatSync(of.fd);
      // An evicted cache copy: the batches that needed it are done (the loader keeps the files of pending batches),
      // so let the disk space go; it is reopened (fetched again by then) if a later batch needs it.
      if (st.nlink === 0 && of.file.cached) { closeSync(of.fd); open.delete(key); continue; }
      if (st.nlink === 0) fail(of.file, 'was deleted while the loader was reading it');
      if (st.size !== of.size) fail(of.file, `changed size from ${of.size} to ${st.size} bytes while the loader was reading it`);
    }
    lastCheck = Date.now();
  };

  const readInto = (of: OpenFile, row: number, count: number, into: Uint8Array, at: number) => {
    const len = count * of.rowBytes;
    const pos = of.dataStart + row * of.rowBytes;
    let done = 0;
    while (done < len) {
      const got = readSync(of.fd, into, at + done, len - done, pos + done);
      if (got === 0) fail(of.file, `ended early while reading ${count} sample(s) from row ${row} (truncated while the loader was reading it?)`, pos + done);
      done += got;
    }
    if (of.swap) swapBytes(into.subarray(at, at + len), of.swap);
  };

  /** Read `count` consecutive samples from global id `first` (may span parts) into the views at slot `at`. */
  const readRun = (first: number, count: number, xv: RawView, yv: RawView | null, at: number) => {
    while (count > 0) {
      const pi = partOf(parts, first);
      const p = parts[pi];
      const row = first - p.start;
      const take = Math.min(count, p.samples - row);
      readInto(openFile(pi, 'x'), row, take, xv.u8, at * xRow);
      // y is opened even when labels are cached, so a deleted or damaged label shard is still noticed.
      const yf = openFile(pi, 'y');
      if (yv) readInto(yf, row, take, yv.u8, at * yRow);
      first += take; count -= take; at += take;
    }
  };

  // Block mode: one window of samples (in stored order) kept in memory.
  let win: { epoch: number; w: number; x: RawView; y: RawView } | null = null;
  const loadWindow = (epoch: number, w: number) => {
    if (win && win.epoch === epoch && win.w === w) return win;
    const [a, b] = plan.windowRange(w);
    const L = b - a;
    if (!win || win.x.u8.byteLength < L * xRow) {
      win = null; // let the old window go before allocating
      win = { epoch, w, x: rawView(spec.x.dtype, new Uint8Array(Math.max(8, L * xRow))), y: rawView(spec.y.dtype, new Uint8Array(Math.max(8, L * yRow))) };
    }
    win.epoch = epoch; win.w = w;
    let at = 0;
    for (const [first, count] of plan.windowRuns(epoch, w)) {
      readRun(first, count, win.x, labels ? null : win.y, at);
      at += count;
    }
    return win;
  };

  // Native gathers: one call per run of samples from the same part, from a mapping (io: 'mmap') or with preads.
  const addon = init.native !== false ? gatherAddon() : null;
  const useMap = init.io === 'mmap';
  const maps = new Map<number, MapHandle>();
  // Fused uint8 -> float32 in native code (uint8 has no byte order, so nothing to swap).
  const fused = spec.xOut === 'float32' && spec.x.dtype === 'uint8' && spec.channels === 1 && spec.aug === null;
  const rowsBuf = new Float64Array(B), destBuf = new Uint32Array(B);
  const mapped = (pi: number): MapHandle => {
    let h = maps.get(pi);
    if (!h) {
      try { h = addon!.open(parts[pi].x.path); } catch (e) { return fail(parts[pi].x, `cannot be mapped (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`); }
      maps.set(pi, h);
    }
    return h;
  };
  /** Gather the sorted batch positions `sorted` (ids[sorted[r]]) part by part into the output (fused) or the scratch. */
  const gatherMapped = (n: number, sorted: Uint32Array, out: Uint8Array | Float32Array) => {
    let r = 0;
    while (r < n) {
      const pi = partOf(parts, ids[sorted[r]]);
      const p = parts[pi];
      const xf = openFile(pi, 'x');
      const yf = openFile(pi, 'y');
      let j = 0;
      const end = p.start + p.samples;
      const r0 = r;
      while (r < n && ids[sorted[r]] < end) {
        rowsBuf[j] = ids[sorted[r]] - p.start;
        destBuf[j] = fused ? sorted[r] : r;
        if (!labels) readInto(yf, rowsBuf[j], 1, yScratch.u8, r * yRow);
        j++; r++;
      }
      const a = fused ? spec.a[0] : 0, b = fused ? spec.b[0] : 0;
      // pgather notices cold data itself (a row not in the page cache) and then hints the run's remaining rows at once.
      const status = useMap
        ? addon!.gather(mapped(pi), xf.dataStart, xRow, rowsBuf, destBuf, j, out, fused ? 1 : 0, a, b)
        : addon!.pgather(xf.fd, xf.dataStart, xRow, rowsBuf, destBuf, j, out, fused ? 1 : 0, a, b);
      if (status !== 0) {
        fail(p.x, `ended early while reading ${j} sample(s) (truncated while the loader was reading it?)`);
      }
      if (xf.swap && !fused) for (let q = r0; q < r; q++) swapBytes(xScratch.u8.subarray(q * xRow, (q + 1) * xRow), xf.swap);
    }
  };


  // A global shuffle's ids computed natively (~4x faster than the JS Feistel network; same bits).
  let perm: { epoch: number; keys: Uint32Array; half: number; n: number } | null = null;
  const batchIds = (epoch: number, start: number, n: number) => {
    if (addon?.permute) {
      if (perm?.epoch !== epoch) {
        const p = plan.globalOrder(epoch);
        perm = p ? { epoch, keys: Uint32Array.from(p.feistel.keys), half: p.feistel.half, n: p.n } : null;
      }
      if (perm) { addon.permute(perm.keys, perm.half, perm.n, plan.streamPosition(start), n, ids); return; }
    }
    plan.samples(epoch, start, n, ids);
  };

  return {
    gathersX: addon !== null && fused && init.plan.mode !== 'block',
    fill(epoch, start, n, slot, into) {
      if (Date.now() - lastCheck >= init.checkMs) checkOpen();
      const target = into ?? outputs[slot];
      t.setOutput(target[0], target[1]);
      if (init.plan.mode === 'block') {
        for (let k = 0; k < n; k++) {
          const q = start + k;
          const w = plan.windowOf(q);
          const cur = loadWindow(epoch, w);
          const s = plan.windowSlot(epoch, q);
          t.x(k, cur.x, s, epoch, plan.streamPosition(q));
          if (labels) {
            // Stored-order slot s of window w is global id plan.samples(...); recover it only for labels.
            plan.samples(epoch, q, 1, ids);
            t.y(k, labels, ids[0], ids[0]);
          } else t.y(k, cur.y, s, -1);
        }
        return;
      }
      batchIds(epoch, start, n);
      for (let k = 0; k < n; k++) order[k] = k;
      const sorted = order.subarray(0, n);
      // Sorted by file offset for positioned reads (helps a cold disk); mapped gathers only group by part.
      if ((init.plan.mode !== 'none' || init.plan.subset) && !(useMap && parts.length === 1)) sortByIds(n, sorted);
      if (addon) {
        gatherMapped(n, sorted, fused ? target[0] : xScratch.u8);
        for (let r = 0; r < n; r++) slotOf[sorted[r]] = r;
        if (!fused) for (let k = 0; k < n; k++) t.x(k, xScratch, slotOf[k], epoch, plan.streamPosition(start + k));
        if (labels) t.yRows(n, labels, ids);
        else for (let k = 0; k < n; k++) t.y(k, yScratch, slotOf[k], ids[k]);
        return;
      }
      // Read in file order, coalescing runs of consecutive ids; remember where each batch position landed.
      let i = 0;
      while (i < n) {
        let j = i + 1;
        while (j < n && ids[sorted[j]] === ids[sorted[j - 1]] + 1) j++;
        readRun(ids[sorted[i]], j - i, xScratch, labels ? null : yScratch, i);
        for (let r = i; r < j; r++) slotOf[sorted[r]] = r;
        i = j;
      }
      for (let k = 0; k < n; k++) {
        const key = plan.streamPosition(start + k);
        t.x(k, xScratch, slotOf[k], epoch, key);
        if (labels) t.y(k, labels, ids[k], ids[k]);
        else t.y(k, yScratch, slotOf[k], ids[k]);
      }
    },
    close() {
      for (const of of open.values()) closeSync(of.fd);
      open.clear();
      maps.clear(); // mappings are released when their handles are collected (and at thread exit)
    },
  };
}
