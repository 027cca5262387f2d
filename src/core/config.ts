// The one place slimfit reads environment variables. Each is a documented override of a typed option (README,
// "Environment variables"); everything else takes its settings from option objects. Values are parsed once per
// process by one parser, and a malformed value is a user error naming the variable and what it accepts.
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { SlimfitError } from './errors.ts';
import { parseBytes } from './units.ts';

/**
 * Parts of slimfit that `SLIMFIT_DISABLE` can turn off, each with a plain-JavaScript (or plain-tfjs) fallback that
 * gives the same results. `native` turns off every native addon at once.
 */
export const FEATURES = {
  native: 'every native addon (the engine and all helpers below)',
  engine: 'the native training engine (kernels under tfjs wasm)',
  fused: 'the fused training steps of the engine (Dense chains and conv nets)',
  'fused-cnn': 'the fused conv-net training step only (conv nets then train by trainOnBatch)',
  'fused-conv': 'the fused conv+bias+relu kernel of the engine',
  quant: 'the precision lab\'s native rounding and update loops (part of the engine; plain-JavaScript loops give the same bits)',
  gather: 'native loader row reads and uint8 -> float32 conversion',
  csv: 'the native numeric CSV line parser',
  png: 'the native PNG decoder, its thread pool and native gunzip',
  'png-pool': 'the native PNG decode threads only (plain PNGs decode in worker threads)',
  sha256: 'native shard checksums off the main thread',
  trim: 'returning freed native memory to the system (malloc_trim)',
  mpi: 'the MPI addon (data-parallel training under mpirun; without it a run under mpirun stops with an error)',
} as const;
/** A name `SLIMFIT_DISABLE` accepts. */
export type Feature = keyof typeof FEATURES;

/** Every setting read from the environment; `null` where the variable is unset (the caller's default applies). */
export interface EnvSettings {
  /** SLIMFIT_CACHE: folder for cached data (the demo's MNIST store, remote shards under remote/); default $XDG_CACHE_HOME/slimfit or ~/.cache/slimfit. */
  cacheDir: string;
  /** SLIMFIT_CACHE_LIMIT: bytes the cache of remote shards may take; null = the `cacheLimit` option's default. */
  cacheLimit: number | null;
  /** AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL: the S3 endpoint (S3-compatible servers); null = AWS itself. */
  s3Endpoint: string | null;
  /** AWS_REGION or AWS_DEFAULT_REGION; null = us-east-1. */
  s3Region: string | null;
  /** SLIMFIT_THREADS: threads of the native engine's pool (1-256); default all cores. */
  threads: number | null;
  /** SLIMFIT_GEMM: one float32 GEMM library throughout; default (null): oneDNN (else OpenBLAS) when linked, convolutions on the own kernels' tiles. */
  gemm: 'own' | 'openblas' | 'onednn' | null;
  /** SLIMFIT_ISA: cap the instruction set native kernels use (to compare paths on one machine). */
  isa: 'avx512' | 'avx2' | 'generic' | null;
  /** SLIMFIT_BACKEND: tfjs backend for training; default wasm (cpu when wasm cannot start). */
  backend: 'wasm' | 'cpu' | null;
  /** SLIMFIT_DISABLE: comma-separated parts to turn off (see FEATURES). */
  disabled: ReadonlySet<Feature>;
  /** SLIMFIT_REPORT_RSS: print `slimfit-peak-rss-bytes=N` to stderr at exit (used by the test suite). */
  reportRss: boolean;
  /** This process was started by an MPI launcher (mpirun, srun with PMIx/PMI): its rank, and the size when the launcher says it. */
  mpi: MpiLaunch | null;
}

/** What an MPI launcher tells a process about itself through the environment (see MPI_ENV_VARS). */
export interface MpiLaunch {
  rank: number;
  /** Ranks in the job; null when the launcher sets only a rank (PMIX_RANK): MPI_Init then says. */
  size: number | null;
  /** The variables the rank and the size came from (for messages). */
  from: keyof typeof MPI_ENV_VARS;
  sizeFrom: keyof typeof MPI_ENV_VARS | null;
  /** Ranks on this machine, when the launcher says (the engine's default thread count is the cores divided by it). */
  localSize: number | null;
}

/** One variable this module reads: what it accepts, its default, and the typed option or behaviour it overrides. */
export interface EnvVar { accepts: string; default: string; overrides: string }

/** The variables this module reads (for messages, and the README's table, which a test compares with this). */
export const ENV_VARS = {
  SLIMFIT_DISABLE: {
    accepts: `comma-separated names: ${Object.keys(FEATURES).join(', ')}`,
    default: 'none',
    overrides: 'parts with a same-result fallback, below (options in code: installEngine `engine`/`fusedConv`, the training loop\'s `fused`, createLoader `native`, image sources\' `nativeThreads`)',
  },
  SLIMFIT_BACKEND: { accepts: 'wasm or cpu', default: 'wasm (cpu when wasm cannot start)', overrides: 'the `backend` option of fit, evaluate, trainRun and evalRun (`--backend`) when not given' },
  SLIMFIT_THREADS: { accepts: 'an integer 1-256', default: 'all cores', overrides: 'threads of the native engine\'s pool' },
  SLIMFIT_GEMM: { accepts: 'own, openblas or onednn', default: 'with a library linked: oneDNN (else OpenBLAS), convolutions on the own kernels\' tiles on AVX2/AVX-512 CPUs ("Which GEMM runs where"); without one: own', overrides: 'the engine\'s float32 GEMM; a library that is not linked falls back to the default (float64: own unless openblas)' },
  SLIMFIT_ISA: { accepts: 'avx512, avx2 or generic', default: 'the best the CPU has', overrides: 'caps the SIMD level of the engine and the loader\'s gather addon' },
  SLIMFIT_CACHE: { accepts: 'a folder', default: '$XDG_CACHE_HOME/slimfit, else ~/.cache/slimfit', overrides: 'where `slimfit demo` keeps its MNIST store, and the default `cacheDir` of remote stores (its remote/ folder)' },
  SLIMFIT_CACHE_LIMIT: { accepts: 'a size such as 20G or 500M', default: '10G', overrides: 'the `cacheLimit` option of remote stores (`--cache-limit`)' },
  SLIMFIT_REPORT_RSS: { accepts: '1', default: 'unset', overrides: 'the CLI prints `slimfit-peak-rss-bytes=N` to stderr at exit (tests)' },
} as const satisfies Record<`SLIMFIT_${string}`, EnvVar>;

/**
 * Variables MPI launchers set in every rank's environment: read-only inputs (slimfit never asks users to set them).
 * The first present of each pair wins: Open MPI's, then PMIx's (Open MPI 5, Slurm's srun --mpi=pmix), then PMI's
 * (MPICH/Hydra, Intel MPI). Under one, training is data-parallel over MPI (src/core/mpi.ts).
 */
export const MPI_ENV_VARS = {
  OMPI_COMM_WORLD_RANK: { accepts: 'set by Open MPI\'s mpirun', default: 'unset', overrides: 'this process\'s rank: training runs data-parallel over MPI' },
  OMPI_COMM_WORLD_SIZE: { accepts: 'set by Open MPI\'s mpirun', default: 'unset', overrides: 'the number of ranks' },
  PMIX_RANK: { accepts: 'set by PMIx launchers (Open MPI 5, srun --mpi=pmix)', default: 'unset', overrides: 'this process\'s rank (the size comes from MPI_Init)' },
  PMI_RANK: { accepts: 'set by PMI launchers (MPICH\'s Hydra, Intel MPI)', default: 'unset', overrides: 'this process\'s rank' },
  PMI_SIZE: { accepts: 'set by PMI launchers', default: 'unset', overrides: 'the number of ranks' },
  OMPI_COMM_WORLD_LOCAL_SIZE: { accepts: 'set by Open MPI\'s mpirun', default: 'unset', overrides: 'ranks on this machine: the engine\'s threads default to the cores divided by it (SLIMFIT_THREADS still wins)' },
  MPI_LOCALNRANKS: { accepts: 'set by MPICH\'s Hydra', default: 'unset', overrides: 'ranks on this machine, as above' },
} as const satisfies Record<string, EnvVar>;

/** The MPI launch this environment describes, or null; a malformed rank or size is a SlimfitError naming the variable. */
export function parseMpiEnv(env: Record<string, string | undefined>): MpiLaunch | null {
  const int = (name: keyof typeof MPI_ENV_VARS, min: number): number | null => {
    const v = env[name];
    if (v === undefined || v === '') return null;
    const n = Number(v.trim());
    if (!Number.isSafeInteger(n) || n < min) {
      throw new SlimfitError(`environment variable ${name}=${JSON.stringify(v)} (set by the MPI launcher) is not a whole number >= ${min}`, {
        hint: 'start the ranks with mpirun / srun, which set it; do not set it by hand',
      });
    }
    return n;
  };
  const pairs = [['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE'], ['PMIX_RANK', null], ['PMI_RANK', 'PMI_SIZE']] as const;
  for (const [r, s] of pairs) {
    const rank = int(r, 0);
    if (rank === null) continue;
    const size = s ? int(s, 1) : null;
    if (size !== null && rank >= size) {
      throw new SlimfitError(`environment variable ${r}=${rank} is not below ${s}=${size}`, { hint: 'start the ranks with mpirun / srun, which set both' });
    }
    const localSize = int(r === 'OMPI_COMM_WORLD_RANK' ? 'OMPI_COMM_WORLD_LOCAL_SIZE' : 'MPI_LOCALNRANKS', 1);
    return { rank, size, from: r, sizeFrom: s, localSize };
  }
  return null;
}

/**
 * Variables read at install time only, by native/build.mjs and native/detect-*.cjs (not by this module: they decide
 * what gets compiled, before any of slimfit runs). Listed here so the README's table of them is checked too.
 */
export const BUILD_ENV_VARS = {
  SLIMFIT_SKIP_NATIVE: { accepts: 'any non-empty value', default: 'unset', overrides: '`npm install` builds no native addon (everything runs on the JS fallbacks)' },
  SLIMFIT_NO_BLAS: { accepts: 'any non-empty value', default: 'unset', overrides: 'builds the engine without a GEMM library (neither OpenBLAS nor oneDNN) even when one is installed' },
  SLIMFIT_NO_DNNL: { accepts: 'any non-empty value', default: 'unset', overrides: 'builds the engine without oneDNN even when it is installed (OpenBLAS, when installed, then runs its float32 GEMMs)' },
  SLIMFIT_NO_ZLIB: { accepts: 'any non-empty value', default: 'unset', overrides: 'builds without zlib (no native PNG decoder or gunzip)' },
  SLIMFIT_NO_NODE_OPENSSL: { accepts: 'any non-empty value', default: 'unset', overrides: 'builds without node\'s OpenSSL headers (no native shard checksums)' },
  SLIMFIT_NO_MPI: { accepts: 'any non-empty value', default: 'unset', overrides: 'builds without MPI even when `mpicc` is installed (no `slimfit_mpi`: no training under mpirun)' },
} as const satisfies Record<`SLIMFIT_${string}`, EnvVar>;

function bad(name: keyof typeof ENV_VARS, value: string): SlimfitError {
  return new SlimfitError(`environment variable ${name}=${JSON.stringify(value)} is not valid`, {
    hint: `set it to ${ENV_VARS[name].accepts}, or unset it for the default`,
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
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw bad('SLIMFIT_THREADS', threadsRaw);
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
  const limitRaw = env.SLIMFIT_CACHE_LIMIT;
  let cacheLimit: number | null = null;
  if (limitRaw !== undefined && limitRaw !== '') {
    cacheLimit = parseBytes(limitRaw.trim());
    if (cacheLimit === null || !(cacheLimit > 0)) throw bad('SLIMFIT_CACHE_LIMIT', limitRaw);
  }
  return {
    cacheDir: env.SLIMFIT_CACHE ? env.SLIMFIT_CACHE : env.XDG_CACHE_HOME ? join(env.XDG_CACHE_HOME, 'slimfit') : join(homedir(), '.cache', 'slimfit'),
    cacheLimit,
    s3Endpoint: env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || null,
    s3Region: env.AWS_REGION || env.AWS_DEFAULT_REGION || null,
    threads,
    gemm: oneOf('SLIMFIT_GEMM', env.SLIMFIT_GEMM, ['own', 'openblas', 'onednn'] as const),
    isa: oneOf('SLIMFIT_ISA', env.SLIMFIT_ISA, ['avx512', 'avx2', 'generic'] as const),
    backend: oneOf('SLIMFIT_BACKEND', env.SLIMFIT_BACKEND, ['wasm', 'cpu'] as const),
    disabled,
    reportRss: rss === '1',
    mpi: parseMpiEnv(env),
  };
}

let cached: EnvSettings | null = null;

/** This process's settings, parsed from process.env on first use. */
export function envSettings(): EnvSettings {
  cached ??= parseEnv();
  return cached;
}

/** Whether `feature` is on under `settings`: neither it nor `native` is named in SLIMFIT_DISABLE (every feature is native code). */
export function isEnabled(settings: Pick<EnvSettings, 'disabled'>, feature: Feature): boolean {
  const { disabled } = settings;
  return !disabled.has(feature) && !disabled.has('native');
}

/** Whether `feature` is on in this process (see {@link isEnabled}). */
export function featureEnabled(feature: Feature): boolean {
  return isEnabled(envSettings(), feature);
}

/** `SLIMFIT_DISABLE=<feature>`: how messages name the setting that turned `feature` off. */
export function disabledBy(feature: Feature): string {
  const { disabled } = envSettings();
  return `SLIMFIT_DISABLE=${disabled.has(feature) ? feature : 'native'}`;
}

/** What native code takes from the environment, handed to each addon's `configure` right after it loads. */
export interface NativeSettings {
  /** Pool threads; 0 = one per hardware thread. */
  threads: number;
  /** '' = the default choice. */
  gemm: 'own' | 'openblas' | 'onednn' | '';
  /** '' = the best the CPU has. */
  isa: 'avx512' | 'avx2' | 'generic' | '';
}

/** This process's {@link NativeSettings}. */
export function nativeSettings(): NativeSettings {
  const s = envSettings();
  // Several MPI ranks on one machine share its cores (each rank's own pool of all cores would oversubscribe them).
  const local = s.mpi?.localSize ?? 1;
  const threads = s.threads ?? (local > 1 ? Math.max(1, Math.floor(availableParallelism() / local)) : 0);
  return { threads, gemm: s.gemm ?? '', isa: s.isa ?? '' };
}

/**
 * OpenMP's thread-binding variables. libgomp (which the engine's oneDNN brings along) reads them when it loads and
 * then pins the loading thread, and so every thread the engine's pool starts from it, to one CPU.
 */
const OPENMP_BINDING = ['OMP_PROC_BIND', 'OMP_PLACES', 'GOMP_CPU_AFFINITY'] as const;

/**
 * Run `load` (loading a native addon) with OpenMP's thread-binding variables taken out of the environment, then put
 * them back: the engine's kernels run on its own thread pool, which a binding made for OpenMP teams would otherwise
 * squeeze onto one core. Child processes and other OpenMP code loaded later still see the variables.
 *
 * @example
 * const mod = withoutOpenMpBinding(() => require('./build/Release/slimfit_engine.node'));
 */
export function withoutOpenMpBinding<T>(load: () => T): T {
  const saved = OPENMP_BINDING.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]!] as const);
  for (const [k] of saved) delete process.env[k];
  try {
    return load();
  } finally {
    for (const [k, v] of saved) process.env[k] = v;
  }
}

/** This process's place in an Open MPI job: `rank` (0-based) of `size` processes. */
export interface MpiPlace {
  rank: number;
  size: number;
  /** The job's id (PMIx namespace or Open MPI job id) when mpirun gives one: tells this job's files from an earlier job's. */
  job: string;
}

/**
 * The MPI rank and world size `mpirun` (Open MPI) gives this process through OMPI_COMM_WORLD_RANK and
 * OMPI_COMM_WORLD_SIZE (and the job id from PMIX_NAMESPACE, else OMPI_MCA_ess_base_jobid); null when not started by mpirun. Malformed values are a SlimfitError (never a guess).
 *
 * @example
 * const mpi = mpiEnv(); // { rank: 1, size: 3 } under `mpirun -np 3`
 * if (mpi && mpi.size > 1) console.log(`rank ${mpi.rank} of ${mpi.size}`);
 */
export function mpiEnv(env: Record<string, string | undefined> = process.env): MpiPlace | null {
  const r = env.OMPI_COMM_WORLD_RANK, s = env.OMPI_COMM_WORLD_SIZE;
  if ((r === undefined || r === '') && (s === undefined || s === '')) return null;
  const rank = Number(r), size = Number(s);
  if (!(Number.isSafeInteger(rank) && Number.isSafeInteger(size) && size >= 1 && rank >= 0 && rank < size)) {
    throw new SlimfitError(`environment variables OMPI_COMM_WORLD_RANK=${JSON.stringify(r ?? '')} and OMPI_COMM_WORLD_SIZE=${JSON.stringify(s ?? '')} do not name a rank of an MPI job`, {
      hint: 'start slimfit with mpirun, or unset both variables',
    });
  }
  const job = env.PMIX_NAMESPACE || env.OMPI_MCA_ess_base_jobid || env.OMPI_MCA_orte_ess_jobid || '';
  return { rank, size, job };
}
