// The import rules of src/: data flows one way (core -> formats -> store -> loader -> train; engine under train;
// remote (network transfers and the shard cache) on core only, under store),
// nothing imports the CLI, and src/ never reaches into the repository's tools (bench/, lab/, dev/, test/, bin/).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../dev/helpers.ts';

const SRC = join(ROOT, 'src');

/** For each layer (a folder of src/), the layers it may import from besides itself. */
export const LAYERS: Record<string, string[]> = {
  core: [],
  formats: ['core'],
  remote: ['core'],
  store: ['core', 'formats', 'remote'],
  loader: ['core', 'formats', 'remote', 'store'],
  engine: ['core'],
  train: ['core', 'formats', 'remote', 'store', 'loader', 'engine'],
  precision: ['core', 'formats', 'remote', 'store', 'loader', 'engine', 'train'],
  cli: ['core', 'formats', 'remote', 'store', 'loader', 'engine', 'train', 'precision'],
};
/** Files at the top of src/ (the package's entry points) may import any layer but the CLI. */
const TOP = Object.keys(LAYERS).filter((l) => l !== 'cli');

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : /\.ts$/.test(n) ? [p] : [];
  });
}

/** Relative specifiers a file imports (static, dynamic, re-exports, worker URLs), and non-literal dynamic imports. */
export function importsOf(text: string): { specs: string[]; computed: string[] } {
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|new URL\(\s*)'([^']+)'/g)) specs.push(m[1]);
  // code inside template literals (eval'd worker sources) is not this file's own import
  const code = text.replace(/`(?:[^`\\]|\\.)*`/gs, '``');
  const computed = [...code.matchAll(/\bimport\s*\(\s*([^'\s)][^)]*)\)/g)].map((m) => m[1]);
  return { specs, computed };
}

/** Every rule the file at `file` (absolute, under src/) breaks. */
export function violations(file: string, text: string): string[] {
  const rel = relative(SRC, file).split('/');
  const from = rel.length > 1 ? rel[0] : null;
  const out: string[] = [];
  const { specs, computed } = importsOf(text);
  for (const c of computed) out.push(`${relative(ROOT, file)}: computed import(${c}): use a literal path so the layers can be checked`);
  for (const spec of specs) {
    if (!spec.startsWith('.')) continue;
    const target = resolve(dirname(file), spec);
    const t = relative(SRC, target).split('/');
    if (t[0] === '..') { out.push(`${relative(ROOT, file)} imports ${spec}, outside src/`); continue; }
    const to = t.length > 1 ? t[0] : null;
    if (to === null) { out.push(`${relative(ROOT, file)} imports the package entry ${spec}`); continue; }
    if (to === from) continue;
    if (!(to in LAYERS)) { out.push(`${relative(ROOT, file)} imports ${spec}: src/${to} is not a known layer`); continue; }
    const allowed = from === null ? TOP : LAYERS[from];
    if (from !== null && !(from in LAYERS)) out.push(`${relative(ROOT, file)}: src/${from} is not a known layer`);
    else if (!allowed.includes(to)) out.push(`${relative(ROOT, file)} (${from ?? 'entry'}) imports ${to}: ${from ?? 'entry'} may import ${allowed.join(', ') || 'nothing else'}`);
  }
  return out;
}

test('every import in src/ follows the layer rules', () => {
  const bad = walk(SRC).flatMap((f) => violations(f, readFileSync(f, 'utf8')));
  assert.deepEqual(bad, []);
});

test('the layer check catches a back-edge, the CLI imported, a path out of src/ and a computed import', () => {
  assert.match(violations(join(SRC, 'formats', 'x.ts'), "import { t } from '../store/manifest.ts';").join(), /formats\) imports store/);
  assert.match(violations(join(SRC, 'train', 'x.ts'), "const m = await import('../cli/train.ts');").join(), /train\) imports cli/);
  assert.match(violations(join(SRC, 'core', 'x.ts'), "import a from '../../bench/main.ts';").join(), /outside src/);
  assert.match(violations(join(SRC, 'loader', 'x.ts'), 'const m = await import(path);').join(), /computed import/);
  assert.match(violations(join(SRC, 'engine', 'x.ts'), "export { l } from '../loader/index.ts';").join(), /engine\) imports loader/);
  assert.deepEqual(violations(join(SRC, 'store', 'x.ts'), "import { a } from '../formats/npy.ts';\nimport { b } from './y.ts';"), []);
  assert.match(violations(join(SRC, 'remote', 'x.ts'), "import { openStore } from '../store/open.ts';").join(), /remote\) imports store/);
  assert.deepEqual(violations(join(SRC, 'store', 'x.ts'), "import { ShardCache } from '../remote/index.ts';"), []);
});

test('bench/, lab/ and dev/ never import test files', () => {
  const tools = ['bench', 'lab', 'dev'].flatMap((d) => walk(join(ROOT, d)));
  const bad = tools.filter((f) => importsOf(readFileSync(f, 'utf8')).specs.some((s) => s.startsWith('.') && relative(ROOT, resolve(dirname(f), s)).startsWith('test/')));
  assert.deepEqual(bad.map((f) => relative(ROOT, f)), []);
});
