// The one place slimfit reads environment variables. Each is a documented override of a typed option (README,
// "Environment variables"); everything else takes its settings from option objects. Values are parsed once per
// process by one parser, and a malformed value is a user error naming the variable and what it accepts.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { SlimfitError } from './errors.ts';

/**
 * Parts of slimfit that `SLIMFIT_DISABLE` can turn off, each with a plain-JavaScript (or plain-tfjs) fallback that
 * gives the same results. `native` turns off every native addon at once.
 */
export const FEATURES = {
  native: 'every native addon (the engine and all helpers below)',
  engine: 'the native training engine (kernels under tfjs wasm)',
  fused: 'the fused Dense training step of the engine',
  'fused-conv': 'the fused conv+bias+relu kernel of the engine',
  gather: 'native loader row reads and uint8 -> float32 conversion',
  csv: 'the native numeric CSV line parser',
  png: 'the native PNG decoder, its thread pool and native gunzip',
  'png-pool': 'the native PNG decode threads only (plain PNGs decode in worker threads)',
  sha256: 'native shard checksums off the main thread',
  trim: 'returning freed native memory to the system (malloc_trim)',
} as const;
/** A name `SLIMFIT_DISABLE` accepts. */
export type Feature = keyof typeof FEATURES;

/** Features that live in a native addon, so `native` turns them off too. */
const NATIVE: ReadonlySet<Feature> = new Set(Object.keys(FEATURES) as Feature[]);

/** Every setting read from the environment; `null` where the variable is unset (the caller's default applies). */
export interface EnvSettings {
  /** SLIMFIT_CACHE: folder for cached data (the demo's MNIST store); default ~/.cache/slimfit. */
  cacheDir: string;
  /** SLIMFIT_THREADS: threads of the native engine's pool; default all cores. */
  threads: number | null;
  /** SLIMFIT_GEMM: which float32 GEMM the engine uses; default its own where the CPU has AVX2/AVX-512. */
  gemm: 'own' | 'openblas' | null;
  /** SLIMFIT_ISA: cap the instruction set native kernels use (to compare paths on one machine). */
  isa: 'avx512' | 'avx2' | 'generic' | null;
  /** SLIMFIT_BACKEND: tfjs backend for training; default wasm (cpu when wasm cannot start). */
  backend: 'wasm' | 'cpu' | null;
  /** SLIMFIT_DISABLE: comma-separated parts to turn off (see FEATURES). */
  disabled: ReadonlySet<Feature>;
  /** SLIMFIT_REPORT_RSS: print `slimfit-peak-rss-bytes=N` to stderr at exit (used by the test suite). */
  reportRss: boolean;
}

/** The variables this module reads, with what each accepts (for messages and the README table). */
export const ENV_VARS = {
  SLIMFIT_CACHE: 'a folder',
  SLIMFIT_THREADS: 'a positive integer',
  SLIMFIT_GEMM: 'own or openblas',
  SLIMFIT_ISA: 'avx512, avx2 or generic',
  SLIMFIT_BACKEND: 'wasm or cpu',
  SLIMFIT_DISABLE: `a comma-separated list of ${Object.keys(FEATURES).join(', ')}`,
  SLIMFIT_REPORT_RSS: '1 (or unset)',
} as const;

function bad(name: keyof typeof ENV_VARS, value: string): SlimfitError {
  return new SlimfitError(`environment variable ${name}=${JSON.stringify(value)} is not valid`, {
    hint: `set it to ${ENV_VARS[name]}, or unset it for the default`,
  });
}

function oneOf<T extends string>(name: keyof typeof ENV_VARS, value: string | undefined, allowed: readonly T[]): T | null {
  if (value === undefined || value === '') return null;
  const v = value.trim().toLowerCase();
  if (!(allowed as readonly string[]).includes(v)) throw bad(name, value);
  return v as T;
}

/** Parse `env` (default: process.env). Throws a SlimfitError naming the first malformed variable. */
export function parseEnv(env: Record<string, string | undefined> = process.env): EnvSettings {
  const threadsRaw = env.SLIMFIT_THREADS;
  let threads: number | null = null;
  if (threadsRaw !== undefined && threadsRaw !== '') {
    threads = Number(threadsRaw.trim());
    if (!Number.isInteger(threads) || threads < 1 || threads > 1024) throw bad('SLIMFIT_THREADS', threadsRaw);
  }
  const disabled = new Set<Feature>();
  for (const part of (env.SLIMFIT_DISABLE ?? '').split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '') continue;
    if (!Object.hasOwn(FEATURES, name)) throw bad('SLIMFIT_DISABLE', env.SLIMFIT_DISABLE!);
    disabled.add(name as Feature);
  }
  const rss = env.SLIMFIT_REPORT_RSS;
  if (rss !== undefined && rss !== '' && rss !== '1') throw bad('SLIMFIT_REPORT_RSS', rss);
  return {
    cacheDir: env.SLIMFIT_CACHE ? env.SLIMFIT_CACHE : join(homedir(), '.cache', 'slimfit'),
    threads,
    gemm: oneOf('SLIMFIT_GEMM', env.SLIMFIT_GEMM, ['own', 'openblas'] as const),
    isa: oneOf('SLIMFIT_ISA', env.SLIMFIT_ISA, ['avx512', 'avx2', 'generic'] as const),
    backend: oneOf('SLIMFIT_BACKEND', env.SLIMFIT_BACKEND, ['wasm', 'cpu'] as const),
    disabled,
    reportRss: rss === '1',
  };
}

let cached: EnvSettings | null = null;

/** This process's settings, parsed from process.env on first use. */
export function envSettings(): EnvSettings {
  cached ??= parseEnv();
  return cached;
}

/** Whether `feature` is on: not named in SLIMFIT_DISABLE (and, for native parts, `native` not named either). */
export function featureEnabled(feature: Feature): boolean {
  const { disabled } = envSettings();
  return !disabled.has(feature) && !(NATIVE.has(feature) && disabled.has('native'));
}
