// One config: src/core/config.ts is the only runtime reader of SLIMFIT_* variables (a scan of src/, bin/ and native/
// enforces it), parseEnv accepts exactly what ENV_VARS documents, and the README's tables list exactly ENV_VARS,
// FEATURES and BUILD_ENV_VARS.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { BUILD_ENV_VARS, ENV_VARS, type EnvVar, type Feature, FEATURES, isEnabled, MPI_ENV_VARS, parseEnv } from '../src/core/config.ts';
import { isSlimfitError } from '../src/core/errors.ts';
import { ROOT, runCli } from '../dev/helpers.ts';

/** Ways code reads an environment variable named SLIMFIT_*; each match's group 1 is the name. */
const READS = [
  /\benv\s*\.\s*(SLIMFIT_\w+)/g, // process.env.SLIMFIT_X, env.SLIMFIT_X
  /\benv\s*\[\s*['"`](SLIMFIT_\w+)['"`]\s*\]/g, // process.env['SLIMFIT_X']
  /\{[^{}]*?\b(SLIMFIT_\w+)\b[^{}]*\}\s*=\s*(?:process\.)?env\b/g, // const { SLIMFIT_X } = process.env
  /\bgetenv\s*\(\s*"(SLIMFIT_\w+)"/g, // getenv("SLIMFIT_X"), std::getenv, secure_getenv
];

/** The SLIMFIT_* variables `text` reads, in order of appearance. */
function envReads(text: string): string[] {
  const found: Array<[number, string]> = [];
  for (const re of READS) for (const m of text.matchAll(re)) found.push([m.index, m[1]]);
  return found.sort((a, b) => a[0] - b[0]).map(([, name]) => name);
}

/** Install-time scripts (they decide what gets compiled, before any of slimfit runs): the documented exception. */
const INSTALL_TIME = /^native\/(detect-[^/]+\.cjs|build\.mjs)$/;
const SCANNED = /\.(ts|js|mjs|cjs|c|cc|h)$/;

function* files(dir: string, scanned = SCANNED): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* files(p, scanned);
    else if (scanned.test(name)) yield p;
  }
}

test('the scanner finds every way of reading a SLIMFIT_* variable, and not writes or mentions', () => {
  const reads: Array<[string, string[]]> = [
    ['if (process.env.SLIMFIT_ENGINE === "off") x();', ['SLIMFIT_ENGINE']],
    ["const v = process.env['SLIMFIT_FUSED'];", ['SLIMFIT_FUSED']],
    ['const v = process.env[ "SLIMFIT_X" ] ?? 1;', ['SLIMFIT_X']],
    ['const { SLIMFIT_THREADS, HOME } = process.env;', ['SLIMFIT_THREADS']],
    ['function f(env) { return env.SLIMFIT_CACHE; }', ['SLIMFIT_CACHE']],
    ['const char* s = std::getenv("SLIMFIT_THREADS");', ['SLIMFIT_THREADS']],
    ['const char* cap = getenv( "SLIMFIT_ISA" );', ['SLIMFIT_ISA']],
    ['a = process.env.SLIMFIT_A; b = getenv("SLIMFIT_B");', ['SLIMFIT_A', 'SLIMFIT_B']],
  ];
  for (const [text, want] of reads) assert.deepEqual(envReads(text), want, text);
  const notReads = [
    '// SLIMFIT_DISABLE=engine turns it off',
    "runCli(args, { env: { SLIMFIT_DISABLE: 'png' } })",
    "note: 'disabled by SLIMFIT_DISABLE=engine'",
    '#ifdef SLIMFIT_HAVE_OPENBLAS',
    'const HOME = process.env.HOME;',
  ];
  for (const text of notReads) assert.deepEqual(envReads(text), [], text);
});

test('no file in src/, bin/ or native/ but src/core/config.ts reads a SLIMFIT_* variable (install-time scripts aside)', () => {
  const offenders: string[] = [];
  let scanned = 0;
  for (const top of ['src', 'bin', 'native']) {
    for (const file of files(join(ROOT, top))) {
      const rel = relative(ROOT, file);
      if (rel === 'src/core/config.ts' || INSTALL_TIME.test(rel)) continue;
      scanned++;
      const names = envReads(readFileSync(file, 'utf8'));
      if (names.length) offenders.push(`${rel} reads ${[...new Set(names)].join(', ')}`);
    }
  }
  assert.ok(scanned > 50, `scanned ${scanned} files`);
  assert.deepEqual(offenders, [], 'read these through envSettings()/featureEnabled() in src/core/config.ts');
});

test('tests, dev/, bench/, lab/ (their python too), .ci/run and package.json name only SLIMFIT_* variables that exist (a misspelt switch would make a comparison vacuous)', () => {
  const known = new Set([...Object.keys(ENV_VARS), ...Object.keys(BUILD_ENV_VARS)]);
  const unknown: string[] = [];
  let scanned = 0;
  // the tool folders' sources and python peers, and the scripts that set variables for them: CI and npm scripts
  const tools = ['test', 'dev', 'bench', 'lab'].flatMap((top) => [...files(join(ROOT, top), /\.(ts|js|mjs|cjs|c|cc|h|py)$/)]);
  for (const file of [...tools, join(ROOT, '.ci/run'), join(ROOT, 'package.json')]) {
    const rel = relative(ROOT, file);
    if (rel === 'test/config.test.ts') continue; // the scanner's own examples above
    scanned++;
    for (const m of readFileSync(file, 'utf8').matchAll(/\bSLIMFIT_[A-Z0-9_]+\b/g)) if (!known.has(m[0])) unknown.push(`${rel}: ${m[0]}`);
  }
  assert.ok(scanned > 50 && tools.some((f) => f.endsWith('.py')), `scanned ${scanned} files`);
  assert.deepEqual(unknown, [], 'name a variable from ENV_VARS or BUILD_ENV_VARS (src/core/config.ts)');
});

test('MPI launcher variables (MPI_ENV_VARS) are named only in src/core/config.ts; the README lists exactly them', () => {
  const names = Object.keys(MPI_ENV_VARS);
  const offenders: string[] = [];
  for (const top of ['src', 'bin', 'native']) {
    for (const file of files(join(ROOT, top))) {
      const rel = relative(ROOT, file);
      if (rel === 'src/core/config.ts') continue;
      const text = readFileSync(file, 'utf8');
      const found = names.filter((n) => new RegExp(`\\b${n}\\b`).test(text));
      if (found.length) offenders.push(`${rel} names ${found.join(', ')}`);
    }
  }
  assert.deepEqual(offenders, [], 'read the launcher through envSettings().mpi (src/core/mpi.ts)');
  const md = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = md.indexOf('\n### Read from MPI launchers\n');
  assert.ok(start >= 0);
  const rows = [...md.slice(start, md.indexOf('\n### Install time\n')).matchAll(/^\| `(\w+)` \| (.*) \|$/gm)].map((m) => [m[1], m[2].split(' | ')]);
  assert.deepEqual(rows, Object.entries(MPI_ENV_VARS).map(([n, v]) => [n, [v.accepts, v.default, v.overrides]]));
});

test('config.ts reads exactly the variables ENV_VARS documents; install-time scripts read exactly BUILD_ENV_VARS', () => {
  const own = new Set(envReads(readFileSync(join(ROOT, 'src/core/config.ts'), 'utf8')));
  assert.deepEqual([...own].sort(), Object.keys(ENV_VARS).sort());
  const install = new Set<string>();
  for (const file of files(join(ROOT, 'native'))) {
    if (INSTALL_TIME.test(relative(ROOT, file))) for (const n of envReads(readFileSync(file, 'utf8'))) install.add(n);
  }
  assert.deepEqual([...install].sort(), Object.keys(BUILD_ENV_VARS).sort());
});

/** Assert that parsing `env` throws a SlimfitError naming `name`. */
function rejects(env: Record<string, string>, name: string): void {
  assert.throws(() => parseEnv(env), (e) => isSlimfitError(e) && e.message.includes(`${name}=`) && e.message.includes(ENV_VARS[name as keyof typeof ENV_VARS].accepts),
    `${JSON.stringify(env)} is rejected naming ${name}`);
}

test('parseEnv: defaults when nothing is set', () => {
  const s = parseEnv({});
  assert.deepEqual({ ...s, disabled: [...s.disabled] }, {
    cacheDir: join(homedir(), '.cache', 'slimfit'), threads: null, gemm: null, isa: null, backend: null, disabled: [], reportRss: false, mpi: null,
    cacheLimit: null, s3Endpoint: null, s3Region: null,
  });
  assert.deepEqual(parseEnv({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '2' }).mpi, { rank: 1, size: 2, from: 'OMPI_COMM_WORLD_RANK', sizeFrom: 'OMPI_COMM_WORLD_SIZE', localSize: null });
  assert.deepEqual(parseEnv({ SLIMFIT_THREADS: '', SLIMFIT_GEMM: '', SLIMFIT_CACHE: '', SLIMFIT_DISABLE: '' }).threads, null, 'empty = unset');
});

test('parseEnv: remote-store settings (cache folder and limit, S3 endpoint and region)', () => {
  assert.equal(parseEnv({ XDG_CACHE_HOME: '/x/cache' }).cacheDir, join('/x/cache', 'slimfit'));
  assert.equal(parseEnv({ XDG_CACHE_HOME: '/x/cache', SLIMFIT_CACHE: '/y' }).cacheDir, '/y');
  assert.equal(parseEnv({ SLIMFIT_CACHE_LIMIT: '2G' }).cacheLimit, 2e9);
  assert.equal(parseEnv({ SLIMFIT_CACHE_LIMIT: '512MiB' }).cacheLimit, 512 * 2 ** 20);
  assert.throws(() => parseEnv({ SLIMFIT_CACHE_LIMIT: 'lots' }), /SLIMFIT_CACHE_LIMIT="lots" is not valid.*20G/);
  assert.equal(parseEnv({ AWS_ENDPOINT_URL: 'http://a:1', AWS_ENDPOINT_URL_S3: 'http://b:2' }).s3Endpoint, 'http://b:2');
  assert.equal(parseEnv({ AWS_DEFAULT_REGION: 'eu-west-1' }).s3Region, 'eu-west-1');
});

test('parseEnv: SLIMFIT_THREADS takes an integer 1-256', () => {
  assert.equal(parseEnv({ SLIMFIT_THREADS: '4' }).threads, 4);
  assert.equal(parseEnv({ SLIMFIT_THREADS: ' 1 ' }).threads, 1);
  assert.equal(parseEnv({ SLIMFIT_THREADS: '256' }).threads, 256);
  for (const v of ['0', '-2', '1.5', 'abc', '257', '4x']) rejects({ SLIMFIT_THREADS: v }, 'SLIMFIT_THREADS');
});

test('parseEnv: SLIMFIT_GEMM, SLIMFIT_ISA and SLIMFIT_BACKEND take their names (any case)', () => {
  assert.equal(parseEnv({ SLIMFIT_GEMM: 'own' }).gemm, 'own');
  assert.equal(parseEnv({ SLIMFIT_GEMM: 'OpenBLAS' }).gemm, 'openblas');
  assert.equal(parseEnv({ SLIMFIT_GEMM: 'oneDNN' }).gemm, 'onednn');
  rejects({ SLIMFIT_GEMM: 'mkl' }, 'SLIMFIT_GEMM');
  for (const isa of ['avx512', 'avx2', 'generic'] as const) assert.equal(parseEnv({ SLIMFIT_ISA: isa }).isa, isa);
  rejects({ SLIMFIT_ISA: 'sse4' }, 'SLIMFIT_ISA');
  assert.equal(parseEnv({ SLIMFIT_BACKEND: 'wasm' }).backend, 'wasm');
  assert.equal(parseEnv({ SLIMFIT_BACKEND: 'cpu' }).backend, 'cpu');
  rejects({ SLIMFIT_BACKEND: 'webgl' }, 'SLIMFIT_BACKEND');
});

test('parseEnv: SLIMFIT_CACHE is a folder, SLIMFIT_REPORT_RSS is 1 or unset', () => {
  assert.equal(parseEnv({ SLIMFIT_CACHE: '/tmp/sf' }).cacheDir, '/tmp/sf');
  assert.equal(parseEnv({ SLIMFIT_REPORT_RSS: '1' }).reportRss, true);
  rejects({ SLIMFIT_REPORT_RSS: 'yes' }, 'SLIMFIT_REPORT_RSS');
});

test('parseEnv: SLIMFIT_DISABLE takes a comma-separated list of FEATURES; `native` turns off every native part', () => {
  const all = Object.keys(FEATURES) as Feature[];
  assert.deepEqual([...parseEnv({ SLIMFIT_DISABLE: ' engine, Fused ,' }).disabled].sort(), ['engine', 'fused']);
  assert.deepEqual([...parseEnv({ SLIMFIT_DISABLE: all.join(',') }).disabled].sort(), [...all].sort());
  rejects({ SLIMFIT_DISABLE: 'engine,gpu' }, 'SLIMFIT_DISABLE');
  rejects({ SLIMFIT_DISABLE: 'off' }, 'SLIMFIT_DISABLE');
  const none = parseEnv({}), native = parseEnv({ SLIMFIT_DISABLE: 'native' }), csv = parseEnv({ SLIMFIT_DISABLE: 'csv' });
  for (const f of all) {
    assert.equal(isEnabled(none, f), true, `${f} is on by default`);
    assert.equal(isEnabled(native, f), false, `native turns off ${f}`);
    assert.equal(isEnabled(csv, f), f !== 'csv', `csv turns off only csv (${f})`);
  }
});

test('the CLI reports a malformed SLIMFIT_* variable as a user error before running anything', async () => {
  const r = await runCli(['info', '/nonexistent'], { env: { SLIMFIT_DISABLE: 'engin' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^slimfit: error: environment variable SLIMFIT_DISABLE="engin" is not valid\. set it to comma-separated names: native, engine/m);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

/** Rows of the README table under the heading `title`: variable name -> its cells. */
function readmeTable(title: string): Map<string, string[]> {
  const md = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = md.indexOf(`\n${title}\n`);
  assert.ok(start >= 0, `README has a "${title}" section`);
  const rows = new Map<string, string[]>();
  for (const line of md.slice(start + title.length + 2).split('\n')) {
    if (/^#/.test(line)) break;
    const m = /^\| `(SLIMFIT_\w+)` \|(.*)\|$/.exec(line);
    if (m) rows.set(m[1], m[2].split(' | ').map((c) => c.trim()));
  }
  return rows;
}

function assertTable(title: string, vars: Record<string, EnvVar>): void {
  const rows = readmeTable(title);
  assert.deepEqual([...rows.keys()].sort(), Object.keys(vars).sort(), `variables in README's "${title}"`);
  for (const [name, v] of Object.entries(vars)) assert.deepEqual(rows.get(name), [v.accepts, v.default, v.overrides], `README row of ${name}`);
}

test("README's environment tables say what ENV_VARS, FEATURES and BUILD_ENV_VARS say", () => {
  assertTable('## Environment variables', ENV_VARS);
  assertTable('### Install time', BUILD_ENV_VARS);
  const md = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = md.slice(md.indexOf('\n## Environment variables\n'), md.indexOf('\n### Install time\n'));
  const names = [...section.matchAll(/^\| `([a-z0-9-]+)` \| (.*) \|$/gm)].map((m) => [m[1], m[2]]);
  assert.deepEqual(names, Object.entries(FEATURES), 'the table of names SLIMFIT_DISABLE accepts');
});
