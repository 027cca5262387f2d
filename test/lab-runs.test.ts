// The precision lab's run store (lab/runs.ts): resume after a kill, --jobs 2 equal to --jobs 1, damaged records are a
// one-sentence error, and no section (or full-mode claim) while runs are missing. Tiny sizes only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LAB, runCli, tempDir } from '../dev/helpers.ts';
import { canonicalJson, loadRecords, runKey, writeRecord, type RunRecord } from '../lab/runs.ts';
import { runStatus, answersMarkdown } from '../lab/lab-report.ts';

// 3 cells (float32, FL=8 nearest, FL=8 stochastic) x 2 seeds = 6 units of 20 steps each
const GUPTA = ['gupta2015', '--tiny', '--net', 'mlp', '--fl', '8', '--no-mean', '--no-dynamic', '--seeds', '2', '--epochs', '1'];
const runsOf = (out: string) => join(out, 'precision', 'runs', 'gupta2015');
const files = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);
/** Each record's result without its timing. */
function results(dir: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, r] of loadRecords(dir)) { const { seconds: _s, ...rest } = r.result as Record<string, unknown>; out[k] = rest; }
  return out;
}

test('a killed run keeps its finished records; the next run redoes only the rest, and --jobs 2 gives the records of --jobs 1', async () => {
  const a = tempDir(), b = tempDir();
  try {
    const killed = await runCli([...GUPTA, '--out', a.dir], { script: LAB, timeoutMs: 120_000, onStderr: (s, kill) => { if (/ 2\/6 runs/.test(s)) kill('SIGKILL'); } });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    const kept = files(runsOf(a.dir));
    assert.ok(kept.length >= 2 && kept.length < 6, `records after the kill: ${kept}`);
    assert.ok(kept.every((f) => /^[0-9a-f]{16}\.json$/.test(f)), `only whole records: ${kept}`);
    const before = Object.fromEntries(kept.map((f) => [f, readFileSync(join(runsOf(a.dir), f), 'utf8')]));
    assert.ok(!existsSync(join(a.dir, 'precision', 'gupta2015.md')), 'no section while runs are missing');
    const resumed = await runCli([...GUPTA, '--out', a.dir], { script: LAB, timeoutMs: 120_000 });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`${kept.length} of 6 runs on record in .*; running ${6 - kept.length} in 1 process \\(engine at 1 thread each\\)\\n`));
    for (const [f, text] of Object.entries(before)) assert.equal(readFileSync(join(runsOf(a.dir), f), 'utf8'), text, `${f} was redone`);
    assert.equal(files(runsOf(a.dir)).length, 6);
    assert.ok(existsSync(join(a.dir, 'precision', 'gupta2015.md')));

    const par = await runCli([...GUPTA, '--out', b.dir, '--jobs', '2'], { script: LAB, timeoutMs: 120_000 });
    assert.equal(par.code, 0, par.stderr);
    assert.match(par.stderr, /running 6 in 2 processes \(engine at 1 thread each\)/);
    assert.deepEqual(results(runsOf(b.dir)), results(runsOf(a.dir)));
    const rec = JSON.parse(readFileSync(join(runsOf(b.dir), files(runsOf(b.dir))[0]), 'utf8')) as RunRecord;
    assert.equal(rec.machine.jobs, 2);
    assert.equal(rec.machine.threads, 1);
    assert.ok(rec.machine.cores >= 1 && rec.machine.cpu.length > 0 && rec.seconds > 0 && !Number.isNaN(Date.parse(rec.started)));
    // the printed table (test errors per seed) is the same too
    const table = (s: string) => s.split('\n').filter((l) => l.startsWith('gupta2015\t')).join('\n');
    assert.equal(table(par.stdout), table(resumed.stdout));
  } finally { a.cleanup(); b.cleanup(); }
});

test('--budget stops starting runs: exit 75, "n of N runs done", no section written', async () => {
  const t = tempDir();
  try {
    const r = await runCli([...GUPTA, '--out', t.dir, '--budget', '0.0001'], { script: LAB, timeoutMs: 120_000 });
    assert.equal(r.code, 75, r.stderr);
    // the deadline passes while the child starts: no run, or the one already given to it, is done
    const m = /gupta2015: (\d) of 6 runs done, (about \d+ s left|time left unknown until a run has been timed \(`npm run lab -- estimate` measures it\)); the section is written once all are done/.exec(r.stderr);
    assert.ok(m && Number(m[1]) < 6, r.stderr);
    assert.equal(files(runsOf(t.dir)).length, Number(m[1]));
    assert.ok(!existsSync(join(t.dir, 'precision', 'gupta2015.md')) && !existsSync(join(t.dir, 'precision', 'gupta2015.json')));
    assert.doesNotMatch(r.stdout, /^gupta2015\t/m);
  } finally { t.cleanup(); }
});

test('a record that does not parse, or whose key does not match its content, is a one-sentence error naming the file', async () => {
  const t = tempDir();
  try {
    const dir = join(t.dir, 'runs', 'fp8');
    const spec = { cfg: { size: 'tiny' }, recipe: 'fp32', seed: 1 };
    const rec: RunRecord = { section: 'fp8', version: 1, key: runKey('fp8', 1, spec), label: 'fp32 seed 1', spec, result: { acc: 0.5, nan: NaN }, started: new Date().toISOString(), finished: new Date().toISOString(), seconds: 1, machine: { cpu: 'x', cores: 2, host: 'h', load1: 0, jobs: 1, threads: 1 } };
    writeRecord(dir, rec);
    const back = loadRecords(dir).get(rec.key)!;
    assert.equal(canonicalJson(back), canonicalJson(rec), 'a record reads back as written (NaN included)');
    assert.ok(Number.isNaN((back.result as { nan: number }).nan));
    // key mismatch: the spec edited after the fact
    const path = join(dir, `${rec.key}.json`);
    writeFileSync(path, readFileSync(path, 'utf8').replace('"seed": 1', '"seed": 2'));
    assert.throws(() => loadRecords(dir), (e: Error) => e.name === 'SlimfitError' && e.message.includes(path) && /does not match its content.*delete it/.test(e.message) && !e.message.includes('\n'));
    // a truncated file (as a crash mid-write would leave without the rename), through the lab command
    writeFileSync(path, '{"section": "fp8", "ver');
    assert.throws(() => loadRecords(dir), (e: Error) => e.message.includes(path) && /not valid JSON.*delete it/.test(e.message));
    mkdirSync(join(t.dir, 'precision', 'runs', 'gupta2015'), { recursive: true });
    writeFileSync(join(runsOf(t.dir), '0123456789abcdef.json'), 'garbage');
    const r = await runCli([...GUPTA, '--out', t.dir], { script: LAB, timeoutMs: 60_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^slimfit-lab: error: run record \S+0123456789abcdef\.json is not valid JSON \(.*\); delete it and run the section again to redo that run$/m);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  } finally { t.cleanup(); }
});

test('lab report counts each section\'s runs of the requested mode and does not claim full mode for a section with runs missing', async () => {
  const t = tempDir();
  try {
    const status = await runStatus({ quick: false, out: t.dir });
    assert.deepEqual(status.map((s) => s.section), ['swallow', 'chaos', 'gupta2015', 'fp8', 'int8']);
    for (const s of status) assert.ok(s.done === 0 && s.total >= 5 && s.size === 'full', JSON.stringify(s));
    const g = status.find((s) => s.section === 'gupta2015')!;
    assert.equal(g.total, 18 * 5, 'gupta2015 full: 18 cells x 5 seeds');
    // a quick-mode gupta2015.json on disk stays labelled quick while the full runs are missing
    mkdirSync(join(t.dir, 'precision'), { recursive: true });
    writeFileSync(join(t.dir, 'precision', 'gupta2015.json'), JSON.stringify({ quick: true, size: 'quick', cells: [] }));
    const md = answersMarkdown(t.dir, undefined, status);
    assert.match(md, /\| gupta2015 \| quick \| 0 of 90 full-mode runs on record \(incomplete: its section shows its last complete results, quick mode\) \|/);
    assert.match(md, /\| fp8 \| not run \| 0 of \d+ full-mode runs on record \(incomplete: its section shows nothing yet\) \|/);
  } finally { t.cleanup(); }
});
