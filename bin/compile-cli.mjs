// The CLI's TypeScript compiled once into plain JavaScript (esbuild: one chunk per command, packages left to Node),
// cached in node_modules/.cache/slimfit and rebuilt when one of its source files changes. Why: through tsx's loader
// hooks (Node 20 runs them on a second thread) every start cost ~0.15 s and ~20 MB more than the compiled chunks.
// Each chunk keeps its sources' import.meta.url, so files found next to a source (addons, workers) are found the same.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { threadId } from 'node:worker_threads';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Besides the sources, a build depends on this file and on esbuild's version. */
const TOOLS = [fileURLToPath(import.meta.url), createRequire(import.meta.url).resolve('esbuild/package.json')];
const DAY_MS = 86_400_000;

/** A short hash of the sources' paths, sizes and modification times (what decides whether a build is stale). */
function stampOf(files) {
  const h = createHash('sha256');
  for (const f of files) {
    const s = statSync(f);
    h.update(`${f}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return h.digest('hex').slice(0, 16);
}

/** esbuild plugin: `import.meta.url` / `import.meta.dirname` of each source stay those of the .ts file. */
const sourceLocation = {
  name: 'source-location',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async ({ path }) => {
      const text = await readFile(path, 'utf8');
      const contents = text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(path).href)).replaceAll('import.meta.dirname', JSON.stringify(dirname(path)));
      return { contents, loader: 'ts' };
    });
  },
};

/**
 * The file URL of `entry` (a .ts file) compiled to JavaScript in `cacheDir`, built now if missing or older than any of
 * its sources; throws when esbuild cannot build it (the caller then runs the sources through tsx).
 */
export async function compiledEntry(entry, cacheDir) {
  const current = join(cacheDir, 'current.json');
  try {
    const c = JSON.parse(readFileSync(current, 'utf8'));
    const out = join(cacheDir, c.stamp, c.out);
    if (c.entry === entry && stampOf(c.inputs) === c.stamp && existsSync(out)) return pathToFileURL(out).href;
  } catch {
    // no build yet, or a source is gone: build
  }
  const { build, stop } = await import('esbuild');
  const started = Date.now();
  mkdirSync(cacheDir, { recursive: true });
  const tmp = mkdtempSync(join(cacheDir, 'tmp-'));
  const r = await build({
    entryPoints: [entry], outdir: tmp, absWorkingDir: ROOT, bundle: true, splitting: true, format: 'esm', platform: 'node', target: 'node20',
    packages: 'external', outExtension: { '.js': '.mjs' }, chunkNames: 'chunk-[hash]', sourcemap: 'linked', keepNames: true,
    metafile: true, logLevel: 'silent', plugins: [sourceLocation],
  }).finally(() => stop()); // esbuild's helper process is not needed after this build
  const inputs = [...Object.keys(r.metafile.inputs).map((p) => resolve(ROOT, p)).sort(), ...TOOLS];
  const [outRel] = Object.entries(r.metafile.outputs).find(([, o]) => o.entryPoint !== undefined && resolve(ROOT, o.entryPoint) === entry) ?? [];
  if (!outRel) throw new Error(`esbuild gave no output for ${entry}`);
  const out = resolve(ROOT, outRel).slice(tmp.length + 1);
  // A source edited while this build ran: use this build once, but do not record it as current.
  if (inputs.some((f) => statSync(f).mtimeMs >= started)) return pathToFileURL(join(tmp, out)).href;
  const stamp = stampOf(inputs);
  const dir = join(cacheDir, stamp);
  try {
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true }); // another process built the same sources first
    if (!existsSync(join(dir, out))) throw e;
  }
  const next = `${current}.${process.pid}-${threadId}.tmp`; // worker threads of one process may build at once
  writeFileSync(next, JSON.stringify({ entry, stamp, out, inputs }));
  renameSync(next, current);
  // Builds of older sources: removed a day after their last build (a running command may still load their chunks).
  for (const name of readdirSync(cacheDir)) {
    const p = join(cacheDir, name);
    if (name !== stamp && name !== 'current.json' && Date.now() - (statSync(p, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > DAY_MS) rmSync(p, { recursive: true, force: true });
  }
  return pathToFileURL(join(dir, out)).href;
}

/**
 * The compiled form of a worker thread's entry (a file:// URL of a .ts source), cached per entry in
 * node_modules/.cache/slimfit/workers: a worker then needs no TypeScript loader of its own (tsx in a worker cost
 * ~0.2 s and ~35 MB per thread).
 */
export function compiledWorker(entryUrl) {
  const entry = fileURLToPath(entryUrl);
  const key = `${basename(entry, '.ts')}-${createHash('sha256').update(entry).digest('hex').slice(0, 8)}`;
  return compiledEntry(entry, join(ROOT, 'node_modules', '.cache', 'slimfit', 'workers', key));
}

/** The compiled CLI entry (src/cli/index.ts) in node_modules/.cache/slimfit/cli. */
export function compiledCli() {
  return compiledEntry(join(ROOT, 'src', 'cli', 'index.ts'), join(ROOT, 'node_modules', '.cache', 'slimfit', 'cli'));
}
