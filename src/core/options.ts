// Checks of library options at the public entry points (createLoader, fit, evaluate, buildModel, openDataset, ...):
// a bad value becomes one SlimfitError naming the function, the option and what it must be, instead of a RangeError
// deep inside, a TypeError, or a silently wrong run (epochs 'abc' training nothing). Every check returns undefined
// for undefined, so callers write `checkInt(...) ?? default`.
import { SlimfitError } from './errors.ts';

/** A value as the user wrote it: strings quoted, everything else as JSON where possible. */
export function shown(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (typeof v === 'function') return 'a function';
  try { return JSON.stringify(v) ?? String(v); } catch { return String(v); }
}

function fail(where: string, name: string, what: string, v: unknown): never {
  throw new SlimfitError(`${where}: option ${name} must be ${what}, got ${shown(v)}`);
}

/** Text of a range: '>= 1', 'between 0 and 1', or nothing when both bounds are beyond what a user would ever pass. */
function range(min: number, max: number, lowOpen = false, highOpen = false): string {
  const lo = Number.isFinite(min) && min > -(2 ** 52);
  const hi = Number.isFinite(max) && max < 2 ** 52;
  if (lo && hi) return ` ${lowOpen ? '>' : '>='} ${min} and ${highOpen ? '<' : '<='} ${max}`;
  if (lo) return ` ${lowOpen ? '>' : '>='} ${min}`;
  if (hi) return ` ${highOpen ? '<' : '<='} ${max}`;
  return '';
}

/** A whole number in [min, max]. */
export function checkInt(where: string, name: string, v: unknown, min: number, max: number = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) fail(where, name, `a whole number${range(min, max)}`, v);
  return v;
}

/** A finite number in [min, max] (or (min, max) with the open flags). */
export function checkNumber(where: string, name: string, v: unknown, min = -Infinity, max = Infinity, open: { low?: boolean; high?: boolean } = {}): number | undefined {
  if (v === undefined) return undefined;
  const ok = typeof v === 'number' && Number.isFinite(v)
    && (open.low ? v > min : v >= min) && (open.high ? v < max : v <= max);
  if (!ok) fail(where, name, `a number${range(min, max, open.low, open.high)}`, v);
  return v as number;
}

/** One of a fixed set of values (strings, false, ...). */
export function checkOneOf<T>(where: string, name: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(v as T)) {
    const list = allowed.map(shown);
    fail(where, name, list.length === 1 ? list[0] : `${list.slice(0, -1).join(', ')} or ${list.at(-1)}`, v);
  }
  return v as T;
}

/** true or false. */
export function checkBool(where: string, name: string, v: unknown): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') fail(where, name, 'true or false', v);
  return v;
}

/** A non-empty string. */
export function checkString(where: string, name: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') fail(where, name, 'a non-empty string', v);
  return v;
}

/** A function (a callback). */
export function checkFunction(where: string, name: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'function') fail(where, name, 'a function', v);
}

/**
 * The options object itself: undefined or a plain object whose keys are all in `allowed` (a misspelt `batchsize`
 * would otherwise be ignored and the default used without a word).
 */
export function checkOptions(where: string, opts: unknown, allowed: readonly string[]): void {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new SlimfitError(`${where}: the options must be an object such as { batchSize: 64 }, got ${shown(opts)}`);
  }
  for (const k of Object.keys(opts)) {
    if (!allowed.includes(k)) {
      const near = allowed.find((a) => a.toLowerCase() === k.toLowerCase());
      throw new SlimfitError(`${where}: unknown option '${k}'${near ? `; did you mean '${near}'?` : `; the options are ${allowed.join(', ')}`}`);
    }
  }
}
