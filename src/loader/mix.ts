// Weighted mixing of several sources (tf.data's sample_from_datasets, PyTorch's WeightedRandomSampler over a
// ConcatDataset): one loader per source, and a seeded choice of source for every position of the mixed stream.
import { type TypedArray, viewAs } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { checkBool, checkInt, checkOptions, shown } from '../core/options.ts';
import { hash32 } from '../core/permutation.ts';
import { LOADER_DEFAULTS } from './defaults.ts';
import { checkLoaderOptions, createLoader, type ShuffledLoader } from './loader.ts';
import { makeTransformSpec } from './transform.ts';
import { type Batch, type Cursor, type DataSource, LOADER_OPTION_KEYS, type Loader, type LoaderOptions } from './types.ts';

/** One source of a mix: a DataSource, or one with its own class-balanced sampling. */
export type MixEntry = DataSource | { source: DataSource; balanced?: boolean };

/** Options of {@link mixSources}: the loader options (applied to every source) plus the mix itself. */
export interface MixOptions extends LoaderOptions {
  /** Relative weight of each source (any non-negative numbers, normalized; default equal). */
  weights?: number[];
  /**
   * Samples in one epoch of the mix, over all ranks (default: the sum of the sources' samples). Sources repeat on their
   * own: one that runs out starts its next (reshuffled) pass, so no source is ever "empty" inside a mixed epoch.
   */
  epochSamples?: number;
}

/** A mixed loader's cursor: the mixed stream's place plus every source's own (the exact next sample of each). */
export interface MixCursor extends Cursor {
  sources: Array<{ epoch: number; position: number }>;
}

/** A batch of a mix: `origin[k]` is the index (into the sources given) of the source sample k came from. */
export interface MixBatch extends Batch {
  origin: Uint8Array;
}

/** The loader {@link mixSources} returns. */
export interface MixedLoader extends Loader {
  /** The weights as used (normalized to sum 1). */
  readonly weights: number[];
  /** One loader per source (seeded from the mix's seed and the source's index). */
  readonly loaders: readonly ShuffledLoader[];
  cursor(): MixCursor;
  resume(c: Cursor): void;
  [Symbol.asyncIterator](): AsyncIterator<MixBatch>;
}

const MIX_KEYS = [...LOADER_OPTION_KEYS, 'weights', 'epochSamples'] as const;
const TAG_MIX = 0x6d1c;

/** The seed of source i's own loader: different per source, so two sources of equal size do not share an order. */
function sourceSeed(seed: number, i: number): number {
  return (hash32(hash32(seed | 0, Math.floor(seed / 2 ** 32)), TAG_MIX + i) % 2 ** 31);
}

function describe(s: DataSource): string {
  return `${s.name} (x ${s.x.dtype} [${s.x.shape.join(',')}], y ${s.y.dtype} [${s.y.shape.join(',')}]${s.classNames ? `, ${s.classNames.length} classes` : ''})`;
}

/** Refuse sources a model cannot train on together: other sample or label specs, other class names. */
export function checkMixable(sources: readonly DataSource[]): void {
  const a = sources[0];
  for (const b of sources.slice(1)) {
    const same = a.x.dtype === b.x.dtype && a.y.dtype === b.y.dtype && a.x.shape.join(',') === b.x.shape.join(',') && a.y.shape.join(',') === b.y.shape.join(',');
    if (!same) {
      throw new SlimfitError(`cannot mix ${describe(a)} with ${describe(b)}: their samples or labels differ in type or shape`, {
        hint: 'mix sources converted alike (same --shape and --x-dtype), e.g. re-run `slimfit convert` for one of them',
      });
    }
    const an = a.classNames?.join('\n'), bn = b.classNames?.join('\n');
    if (an !== bn) {
      const show = (s: DataSource) => (s.classNames ? `[${s.classNames.slice(0, 12).join(', ')}${s.classNames.length > 12 ? ', ...' : ''}]` : 'none');
      throw new SlimfitError(`cannot mix ${a.name} with ${b.name}: their class names differ (${show(a)} vs ${show(b)}), so label i would mean different classes`, {
        hint: 'convert both with the same classes in the same order (e.g. `slimfit convert --class-names ...`)',
      });
    }
  }
}

/**
 * A loader that draws every sample from one of several sources at random with the given weights: tf.data's
 * `sample_from_datasets([a.repeat(), b.repeat()], weights, seed).take(epochSamples)`, or PyTorch's
 * WeightedRandomSampler over a ConcatDataset with per-dataset weights. Which source fills each position is a pure
 * function of (seed, epoch, rank, position), each source streams from its own loader (its own shuffle, optionally
 * class-balanced), and {@link MixCursor} restores the exact place in all of them. Transforms, ranks and workers are
 * as in createLoader; `normalize: 'stats'` uses the FIRST source's statistics for every source (one input scaling
 * for the model, the same one evaluation on the first store uses).
 *
 * @example
 * const a = await openDataset('mnist-store'), b = await openDataset('emnist-digits-store');
 * const loader = mixSources([a.split('train'), { source: b.split('train'), balanced: true }], {
 *   weights: [0.7, 0.3], seed: 1, batchSize: 128, normalize: 'stats', oneHot: true, epochSamples: 60000,
 * });
 * for await (const batch of loader) { // batch.origin[k]: 0 = mnist, 1 = emnist
 * }
 * const c = loader.cursor(); // JSON; loader.resume(c) continues at exactly this sample
 * await loader.close();
 */
export function mixSources(entries: readonly MixEntry[], opts: MixOptions = {}): MixedLoader {
  if (!Array.isArray(entries) || entries.length === 0) throw new SlimfitError('mixSources: give a non-empty list of sources');
  if (entries.length > 255) throw new SlimfitError(`mixSources: at most 255 sources, got ${entries.length}`);
  checkOptions('mixSources', opts, MIX_KEYS);
  checkLoaderOptions('mixSources', opts);
  const list = entries.map((e, i) => {
    const isEntry = typeof e === 'object' && e !== null && 'source' in e && !('samples' in e);
    const source = isEntry ? e.source : e as DataSource;
    if (!source || typeof source !== 'object' || !('samples' in source)) throw new SlimfitError(`mixSources: source ${i} must be a DataSource or { source, balanced }, got ${shown(e)}`);
    const balanced = isEntry ? checkBool('mixSources', `sources[${i}].balanced`, e.balanced) : undefined;
    return { source, balanced: balanced ?? opts.balanced ?? false };
  });
  const sources = list.map((e) => e.source);
  checkMixable(sources);
  const S = sources.length;
  const raw = opts.weights ?? sources.map(() => 1);
  if (!Array.isArray(raw) || raw.length !== S || !raw.every((w) => typeof w === 'number' && Number.isFinite(w) && w >= 0) || !raw.some((w) => w > 0)) {
    throw new SlimfitError(`mixSources: option weights must be ${S} non-negative numbers, not all 0 (one per source), got ${shown(raw)}`);
  }
  const total = raw.reduce((s, w) => s + w, 0);
  const weights = raw.map((w) => w / total);
  const cumulative: number[] = [];
  weights.reduce((s, w, i) => (cumulative[i] = i === S - 1 ? 1 : s + w), 0);
  const B = checkInt('mixSources', 'batchSize', opts.batchSize, 1) ?? LOADER_DEFAULTS.batchSize;
  const seed = opts.seed ?? LOADER_DEFAULTS.seed;
  const rank = opts.rank ?? 0, worldSize = opts.worldSize ?? 1;
  const E = checkInt('mixSources', 'epochSamples', opts.epochSamples, 0) ?? sources.reduce((s, src) => s + src.samples, 0);
  const perRank = Math.floor(E / worldSize);
  const dropLast = opts.dropLast ?? false;
  const batchesPerEpoch = dropLast ? Math.floor(perRank / B) : Math.ceil(perRank / B);
  const first = sources[0];
  // Every source is read as if it had the first source's statistics (one normalization for the whole mix).
  const { weights: _w, epochSamples: _e, balanced: _b, ...common } = opts;
  void _w; void _e; void _b;
  const loaders = list.map(({ source, balanced }, i) => {
    if (weights[i] > 0 && Math.floor(source.samples / worldSize) === 0) {
      throw new SlimfitError(`cannot draw from ${source.name}: it has ${source.samples} samples, none for each of ${worldSize} rank(s)`, { hint: 'give it weight 0 or leave it out of the mix' });
    }
    const src: DataSource = i === 0 ? source : { ...source, stats: first.stats };
    return createLoader(src, { ...common, seed: sourceSeed(seed, i), balanced: balanced || undefined, dropLast: false, reuseBuffers: true, batchSize: B });
  });
  const spec = makeTransformSpec(first, opts, seed);
  const xBytes = spec.xOutBytes, yBytes = spec.yOutBytes;
  const xType = spec.xOut === 'float32' ? 'float32' : first.x.dtype;
  const yType = spec.yOut === 'int32' ? 'int32' : 'float32';

  // The source at position q of epoch e on this rank: a uniform draw from hash(seed, epoch, rank, q) against the weights.
  const key = hash32(hash32(hash32(seed | 0, Math.floor(seed / 2 ** 32)), TAG_MIX), rank);
  const choose = (e: number, q: number): number => {
    const h = hash32(hash32(hash32(key, e | 0), q % 2 ** 32), Math.floor(q / 2 ** 32));
    const u = (h + 0.5) / 2 ** 32;
    let i = 0;
    while (u >= cumulative[i] && i < S - 1) i++;
    return i;
  };

  let epoch = 0, position = 0;
  const subs = loaders.map(() => ({ epoch: 0, position: 0 }));
  let running = false, closed = false;
  let reused: { x: Uint8Array; y: Uint8Array } | null = null;

  const normalize = () => {
    const left = perRank - position;
    if (position > 0 && (left <= 0 || (dropLast && left < B))) { epoch++; position = 0; }
  };

  const mixedSource: DataSource = {
    name: `mix of ${sources.map((s, i) => `${s.name} x${+weights[i].toFixed(4)}`).join(', ')}`,
    samples: E, x: first.x, y: first.y, classNames: first.classNames, stats: first.stats,
    close: async () => {},
  };

  async function* iterate(): AsyncGenerator<MixBatch> {
    if (closed) throw new Error('the loader is closed');
    if (running) throw new Error('this loader is already being iterated; finish or break that loop first');
    running = true;
    const its: Array<AsyncIterator<Batch> | null> = loaders.map(() => null);
    const held: Array<{ b: Batch; off: number } | null> = loaders.map(() => null);
    try {
      normalize();
      for (let i = 0; i < S; i++) loaders[i].resume({ seed: sourceSeed(seed, i), epoch: subs[i].epoch, position: subs[i].position, rank, worldSize });
      const ep = epoch;
      let index = Math.ceil(position / B);
      const next = async (i: number): Promise<{ b: Batch; off: number }> => {
        const h = held[i];
        if (h && h.off < h.b.n) return h;
        for (let attempt = 0; attempt < 2; attempt++) {
          its[i] ??= loaders[i][Symbol.asyncIterator]();
          const r = await its[i]!.next();
          if (!r.done) return (held[i] = { b: r.value, off: 0 });
          its[i] = null; // that source's pass ended: the next iteration is its next epoch
        }
        throw new SlimfitError(`${sources[i].name} gave no samples for the mix`, { hint: 'give it weight 0 or leave it out' });
      };
      while (position < perRank && !(dropLast && perRank - position < B)) {
        const n = Math.min(B, perRank - position);
        const xb = reused && opts.reuseBuffers ? reused.x : new Uint8Array(B * xBytes);
        const yb = reused && opts.reuseBuffers ? reused.y : new Uint8Array(B * yBytes);
        if (opts.reuseBuffers) reused = { x: xb, y: yb };
        const origin = new Uint8Array(n);
        // Source positions advance on copies, committed when the batch is handed out (an error leaves the cursor whole).
        const pos = subs.map((s) => ({ ...s }));
        for (let k = 0; k < n; k++) {
          const i = choose(ep, position + k);
          origin[k] = i;
          let h = held[i];
          if (!h || h.off >= h.b.n) h = await next(i); // an await only when a source's batch is used up
          const bx = h.b.x as TypedArray, by = h.b.y as TypedArray;
          xb.set(new Uint8Array(bx.buffer, bx.byteOffset + h.off * xBytes, xBytes), k * xBytes);
          yb.set(new Uint8Array(by.buffer, by.byteOffset + h.off * yBytes, yBytes), k * yBytes);
          h.off++;
          const p = pos[i];
          if (++p.position >= loaders[i].samplesPerEpoch) { p.epoch++; p.position = 0; }
        }
        subs.forEach((s, i) => Object.assign(s, pos[i]));
        position += n;
        yield {
          n, x: viewAs(xType, xb.subarray(0, n * xBytes)), xShape: [n, ...spec.xShape], y: viewAs(yType, yb.subarray(0, n * yBytes)), yShape: [n, ...spec.yShape],
          epoch: ep, index: index++, origin,
        };
      }
      normalize();
      if (perRank === 0) epoch++; // an empty epoch still advances
    } finally {
      for (const it of its) if (it) await it.return?.();
      running = false;
    }
  }

  return {
    source: mixedSource, batchesPerEpoch, samplesPerEpoch: perRank, weights, loaders,
    [Symbol.asyncIterator]: () => iterate(),
    cursor(): MixCursor {
      const left = perRank - position;
      const end = position > 0 && (left <= 0 || (dropLast && left < B));
      return { seed, epoch: end ? epoch + 1 : epoch, position: end ? 0 : position, rank, worldSize, sources: subs.map((s) => ({ ...s })) };
    },
    resume(c: Cursor) {
      if (running) throw new Error('cannot resume while the loader is being iterated');
      const mc = c as Partial<MixCursor>;
      if (c.seed !== seed || c.rank !== rank || c.worldSize !== worldSize) {
        throw new SlimfitError(`the cursor is for seed ${c.seed}, rank ${c.rank}/${c.worldSize} but this mix has seed ${seed}, rank ${rank}/${worldSize}`, {
          hint: 'create the mix with the same seed, rank and worldSize as the run that saved the cursor',
        });
      }
      const okPos = (e: unknown, p: unknown, max: number) => Number.isSafeInteger(e) && (e as number) >= 0 && Number.isSafeInteger(p) && (p as number) >= 0 && (p as number) <= max;
      if (!okPos(c.epoch, c.position, perRank)) {
        throw new SlimfitError(`the cursor's epoch ${c.epoch} / position ${c.position} is outside this mix's epochs of ${perRank} samples`, { hint: 'the cursor belongs to a different mix or rank split' });
      }
      if (!Array.isArray(mc.sources) || mc.sources.length !== S || !mc.sources.every((s, i) => s && okPos(s.epoch, s.position, loaders[i].samplesPerEpoch))) {
        throw new SlimfitError(`the cursor does not hold a place in each of this mix's ${S} sources (a cursor of a plain loader, or of another mix)`, {
          hint: 'resume a mix with a cursor that mix (same sources, same order) saved',
        });
      }
      epoch = c.epoch; position = c.position;
      mc.sources.forEach((s, i) => { subs[i].epoch = s.epoch; subs[i].position = s.position; });
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all(loaders.map((l) => l.close()));
    },
  };
}
