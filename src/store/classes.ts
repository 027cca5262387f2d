// One class list per store: labels of every input of a conversion are mapped by class name, not by position.
// An image tree's label k means "its k-th sorted folder", so a test tree holding only dog/ has label 0 = dog while
// train's label 0 may be cat; each input's labels are rewritten to indices into the store's one list.
import { type FieldSpec, dtypeSize, elementAsNumber, integerMax, viewAs } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';

/** An input as far as class names go. */
export interface NamedInput {
  readonly name: string;
  readonly classNames?: string[];
}

/** The store's class list and, per input, how its labels become indices into it. */
export interface ClassPlan {
  /** The store's class names (undefined when no input and no option names them). */
  names?: string[];
  /** Per input: its label -> store label, or null when its labels already are store labels. */
  maps: Array<Int32Array | null>;
}

function checkUnique(names: string[], where: string, file?: string): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw new SlimfitError(`class name '${n}' appears twice in ${where}`, { file, hint: 'every class needs its own name' });
    seen.add(n);
  }
}

/**
 * Decide the store's class list: `given` (--class-names), else the first input's own names (train's; a later input
 * may hold a subset). Every input that names its classes is mapped by name; a class the list lacks is an error.
 */
export function planClasses(inputs: readonly NamedInput[], given?: string[]): ClassPlan {
  if (given) checkUnique(given, '--class-names');
  const first = inputs[0];
  const names = given ?? first?.classNames;
  if (!given && first && !first.classNames) {
    const named = inputs.find((s) => s.classNames);
    if (named) {
      throw new SlimfitError(`has no class names, so its labels cannot be matched to the classes of ${named.name} (${named.classNames!.join(', ')})`, {
        file: first.name, hint: 'give the class names of its labels in order with --class-names a,b,c',
      });
    }
  }
  const maps = inputs.map((s) => {
    if (!s.classNames || !names) return null;
    checkUnique(s.classNames, 'its class list', s.name);
    const index = new Map(names.map((n, i) => [n, i]));
    const map = new Int32Array(s.classNames.length);
    let identity = true;
    for (let i = 0; i < s.classNames.length; i++) {
      const j = index.get(s.classNames[i]);
      if (j === undefined) {
        const whose = given ? '--class-names' : first.name;
        throw new SlimfitError(`has class '${s.classNames[i]}', which ${whose} does not have (its classes: ${names.join(', ')})`, {
          file: s.name, hint: given ? 'add the class to --class-names' : `every class of a later input must also be a class of ${first.name}; add its folder there, or leave the class out`,
        });
      }
      map[i] = j;
      if (j !== i) identity = false;
    }
    return identity ? null : map;
  });
  return { names, maps };
}

/** Rewrites one input's labels into the store's y dtype and class indices, into one reused buffer. */
export interface Relabeler {
  /** Store-dtype y bytes for `n` labels of `bytes` (valid until the next call); `first` = index of the first sample (messages). */
  apply(bytes: Uint8Array, n: number, first: number): Uint8Array;
}

/**
 * A relabeler from `from` (an input's y) to `to` (the store's y), through `map` (null: same indices); labels at or
 * beyond the class count `classes` are an error naming the sample (undefined: no names, no limit).
 */
export function createRelabeler(source: string, from: FieldSpec, to: FieldSpec, map: Int32Array | null, classes: number | undefined): Relabeler {
  const size = dtypeSize(to.dtype);
  let buf = new Uint8Array(0);
  const limit = map ? map.length : classes;
  // Labels are written into the store's y dtype (the first input's): a larger value must not wrap around.
  const max = integerMax(to.dtype) ?? Number.MAX_SAFE_INTEGER;
  return {
    apply(bytes, n, first) {
      if (buf.length < n * size) buf = new Uint8Array(n * size);
      const src = viewAs(from.dtype, bytes);
      const out = buf.subarray(0, n * size);
      const dst = viewAs(to.dtype, out);
      for (let i = 0; i < n; i++) {
        const v = elementAsNumber(from.dtype, src, i);
        if (!(Number.isInteger(v) && v >= 0)) {
          throw new SlimfitError(`label ${v} of sample ${first + i} is not a class index`, { file: source, hint: 'labels must be non-negative integers' });
        }
        if (limit !== undefined && v >= limit) {
          throw new SlimfitError(`label ${v} of sample ${first + i} has no class name (the input names ${limit} classes)`, {
            file: source, hint: map ? 'the input is inconsistent; re-create it' : 'give one name per label value with --class-names',
          });
        }
        const w = map ? map[v] : v;
        if (w > max) {
          throw new SlimfitError(`label ${v} of sample ${first + i} does not fit the store's labels, ${to.dtype} (the first input's label dtype; the largest is ${max})`, {
            file: source, hint: 'give the input with the widest labels first, or save every input\'s labels with one integer dtype',
          });
        }
        if (dst instanceof BigInt64Array || dst instanceof BigUint64Array) dst[i] = BigInt(w);
        else dst[i] = w;
      }
      return out;
    },
  };
}
