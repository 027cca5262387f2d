// Numeric text tables: numpy-written MNIST CSV pixel-exact, malformed lines by line number, header/label by name,
// delimiters, float32/float16/uint8 storage vs numpy's own casts, and flat peak RSS when the CSV grows 10x.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCsv, type CsvSource } from '../src/formats/csv.ts';
import { openMessySource } from '../src/formats/messy.ts';
import { MNIST_DIR, needsAddon, py, ROOT, RSS_GROWTH_LIMIT, runCli, tempDir, disableAlso } from '../dev/helpers.ts';
import { featureEnabled } from '../src/core/config.ts';

async function drain(src: CsvSource): Promise<{ x: Buffer; y: bigint[]; n: number }> {
  const xs: Buffer[] = [];
  const y: bigint[] = [];
  let n = 0;
  for await (const b of src.batches()) {
    xs.push(Buffer.from(b.x));
    const v = new BigInt64Array(b.y.slice().buffer, 0, b.n);
    y.push(...v);
    n += b.n;
  }
  return { x: Buffer.concat(xs), y, n };
}

const ROWS = 2000;

describe('numeric text (CSV/TSV/whitespace)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let csv: string;
  let pixels: Buffer;
  let labels: Buffer;
  before(() => {
    tmp = tempDir();
    csv = join(tmp.dir, 'mnist.csv');
    // numpy writes the CSV from the IDX files itself (independent of slimfit's readers).
    py(`
import numpy as np, sys
d, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.fromfile(d + '/train-images-idx3-ubyte', dtype=np.uint8, offset=16)[:n * 784].reshape(n, 784)
y = np.fromfile(d + '/train-labels-idx1-ubyte', dtype=np.uint8, offset=8)[:n]
np.savetxt(out, np.column_stack([y, x]), fmt='%d', delimiter=',', header=','.join(['label'] + ['p%d' % i for i in range(784)]), comments='')
`, [MNIST_DIR, csv, String(ROWS)]);
    pixels = readFileSync(join(MNIST_DIR, 'train-images-idx3-ubyte')).subarray(16, 16 + ROWS * 784);
    labels = readFileSync(join(MNIST_DIR, 'train-labels-idx1-ubyte')).subarray(8, 8 + ROWS);
  });
  after(() => tmp.cleanup());

  it('a numpy-written MNIST CSV converts pixel-exact (uint8, with --shape 28,28 and a header)', async () => {
    const src = await openCsv(csv, { xDtype: 'uint8', shape: [28, 28] });
    assert.deepEqual(src.x, { dtype: 'uint8', shape: [28, 28] });
    assert.deepEqual(src.y, { dtype: 'int64', shape: [] });
    const d = await drain(src);
    assert.equal(d.n, ROWS);
    assert.ok(d.x.equals(pixels));
    assert.deepEqual(d.y, [...labels].map(BigInt));
    assert.equal(src.skipped?.length, 0);
    assert.deepEqual(src.warnings, []);
  });

  it('default float32 holds the same values; the label column can be named', async () => {
    const src = await openMessySource(csv, { labelCol: 'label' });
    assert.ok(src);
    assert.deepEqual(src.x, { dtype: 'float32', shape: [784] });
    const d = await drain(src as CsvSource);
    const f = new Float32Array(d.x.buffer, d.x.byteOffset, d.x.length / 4);
    assert.equal(f.length, ROWS * 784);
    for (let i = 0; i < f.length; i++) if (f[i] !== pixels[i]) assert.fail(`value ${i}: ${f[i]} vs ${pixels[i]}`);
  });

  it('reports a line with a missing field by its line number and skips it; --strict makes it fatal', async () => {
    const lines = readFileSync(csv, 'latin1').split('\n');
    // Line 6 of the file (header is line 1) loses its last field; line 9 gets a word.
    lines[5] = lines[5].slice(0, lines[5].lastIndexOf(','));
    lines[8] = lines[8].replace(/,0,/, ',oops,');
    const bad = join(tmp.dir, 'bad.csv');
    writeFileSync(bad, lines.join('\n'));
    const src = await openCsv(bad, { xDtype: 'uint8' });
    const d = await drain(src);
    assert.equal(d.n, ROWS - 2);
    assert.deepEqual(src.skipped, [
      { path: `${bad}:6`, reason: 'expected 785 fields, found 784' },
      { path: `${bad}:9`, reason: src.skipped![1].reason },
    ]);
    assert.match(src.skipped![1].reason, /field \d+ is not a number: "oops"/);
    // Samples around the bad lines are the right ones (rows 4 and 7 of the data are gone).
    const keep = [...Array(ROWS).keys()].filter((i) => i !== 4 && i !== 7);
    keep.forEach((r, i) => {
      if (!d.x.subarray(i * 784, (i + 1) * 784).equals(pixels.subarray(r * 784, (r + 1) * 784))) assert.fail(`row ${i} should be source row ${r}`);
    });
    const strict = await openCsv(bad, { xDtype: 'uint8', strict: true });
    await assert.rejects(drain(strict), (e: Error) => e.name === 'SlimfitError' && /bad\.csv: line 6: expected 785 fields, found 784/.test(e.message));
  });

  it('parsing in byte ranges on worker threads gives the same samples and absolute line numbers', async () => {
    const lines = readFileSync(csv, 'latin1').split('\n');
    for (const k of [3, 700, 1400, 1999]) lines[k] = lines[k].slice(0, lines[k].lastIndexOf(','));
    const bad = join(tmp.dir, 'ranges.csv');
    writeFileSync(bad, lines.join('\n'));
    const one = await openCsv(bad, { xDtype: 'uint8' });
    const d1 = await drain(one);
    const three = await openCsv(bad, { xDtype: 'uint8', workers: 3, batchRows: 100 });
    const d3 = await drain(three);
    assert.equal(d3.n, ROWS - 4);
    assert.ok(d3.x.equals(d1.x));
    assert.deepEqual(d3.y, d1.y);
    assert.deepEqual(three.skipped, one.skipped);
    assert.deepEqual(three.skipped!.map((s) => s.path), [4, 701, 1401, 2000].map((l) => `${bad}:${l}`));
    const strict = await openCsv(bad, { xDtype: 'uint8', workers: 3, strict: true });
    await assert.rejects(drain(strict), /ranges\.csv: line 4: expected 785 fields/);
    // Progress: bytes read grow with every batch, across the ranges, and end at the file's size.
    const size = statSync(bad).size;
    for (const workers of [0, 3]) {
      const src = await openCsv(bad, { xDtype: 'uint8', workers, batchRows: 100 });
      const at: number[] = [];
      for await (const b of src.batches()) { at.push(src.bytesRead!); b.release?.(); }
      assert.ok(at.every((v, i) => v > 0 && (i === 0 || v >= at[i - 1])), `bytes read per batch: ${at.join(' ')}`);
      assert.ok(at[0] < size / 2, `first batch at ${at[0]} of ${size}`);
      assert.equal(at[at.length - 1], size);
    }
  });

  it('TSV and whitespace text, label in the last column, exponents, float32 and float16 equal numpy casts', async () => {
    const tsv = join(tmp.dir, 'f.tsv');
    const ws = join(tmp.dir, 'f.txt');
    const ref = join(tmp.dir, 'ref');
    const over = Number(py(`
import numpy as np, sys
tsv, ws, ref = sys.argv[1:4]
rng = np.random.default_rng(1)
x = (rng.standard_normal((300, 6)) * 10.0 ** rng.integers(-8, 6, (300, 6))).astype(np.float64)
x[0, 0] = 65000.0; x[1, 1] = -1e-30
y = rng.integers(-3, 1000, 300)
t = np.column_stack([x, y])
np.savetxt(tsv, t, fmt=['%.17g'] * 6 + ['%d'], delimiter='\\t')
np.savetxt(ws, t, fmt=['%.6e'] * 6 + ['%d'], delimiter='   ')
x.astype(np.float32).tofile(ref + '.f32')
x.astype(np.float16).tofile(ref + '.f16')
np.loadtxt(ws)[:, :6].astype(np.float32).tofile(ref + '.ws32')
y.astype(np.int64).tofile(ref + '.y')
print(int((np.abs(x) > 65504).sum()))
`, [tsv, ws, ref]));
    assert.ok(over > 0);
    const y = readFileSync(ref + '.y');
    const a = await drain(await openCsv(tsv, { labelCol: -1, shape: [2, 3] }));
    assert.ok(a.x.equals(readFileSync(ref + '.f32')));
    assert.deepEqual(a.y, [...new BigInt64Array(y.buffer, y.byteOffset, 300)]);
    const h = await openCsv(tsv, { labelCol: 6, xDtype: 'float16' });
    const hd = await drain(h);
    assert.ok(hd.x.equals(readFileSync(ref + '.f16')));
    assert.equal(h.warnings.length, 1);
    assert.match(h.warnings[0], new RegExp(`: ${over} value\\(s\\) were beyond float16 range`));
    const w = await drain(await openCsv(ws, { labelCol: -1 }));
    assert.ok(w.x.equals(readFileSync(ref + '.ws32')));
  });

  it('warns (with the first line) when values do not fit --x-dtype uint8, and rejects a --shape that does not match', async () => {
    const f = join(tmp.dir, 'misfit.csv');
    writeFileSync(f, '1,0,255,3\n2,256,-1,2.5\n3,1,2,3\n');
    const src = await openCsv(f, { xDtype: 'uint8' });
    const d = await drain(src);
    assert.deepEqual([...d.x], [0, 255, 3, 255, 0, 3, 1, 2, 3]);
    assert.equal(src.warnings.length, 1);
    assert.match(src.warnings[0], /3 value\(s\) were not whole numbers in 0\.\.255.*line 2/);
    await assert.rejects(openCsv(f, { shape: [2, 2] }), /--shape 2,2 holds 4 values but each line has 3 features/);
    await assert.rejects(openCsv(f, { labelCol: 'label' }), /no header line/);
  });

  // The native line parser fills the same bounded batches the JS scanner does (the streaming around it is one code
  // path), so the 10x measurement runs once, in the pass with the addons.
  it('peak RSS stays flat when the CSV grows 10x', { skip: !featureEnabled('native') && 'the streaming that bounds memory is the same code with SLIMFIT_DISABLE=native; measured in the pass with the addons' }, async () => {
    const body = readFileSync(csv);
    const headerEnd = body.indexOf(10) + 1;
    const big = join(tmp.dir, 'big.csv');
    const small = join(tmp.dir, 'small.csv');
    // 1x = 10 copies of the 2000-row file, 10x = 100 copies (~36 MB and ~360 MB). float64 output, so that even the
    // 1x run makes more garbage batch buffers than V8 lets pile up before collecting (its steady state).
    const write = async (out: string, copies: number) => {
      const ws = createWriteStream(out);
      ws.write(body.subarray(0, headerEnd));
      for (let i = 0; i < copies; i++) if (!ws.write(body.subarray(headerEnd))) await new Promise<void>((r) => ws.once('drain', () => r()));
      await new Promise<void>((r) => ws.end(() => r()));
    };
    await write(small, 10);
    await write(big, 100);
    const script = join(ROOT, 'test', 'drain-source.mjs');
    // The lowest of three runs each: the suite runs two test files at once, and the other one moves single runs by
    // several percent.
    const lower = async (args: (f: string) => string[], f: string, opts: { script?: string } = {}) => {
      const runs = [await runCli(args(f), opts), await runCli(args(f), opts), await runCli(args(f), opts)];
      for (const r of runs) assert.equal(r.code, 0, r.stderr);
      return runs.reduce((a, b) => (b.peakRss < a.peakRss ? b : a));
    };
    const flat = (what: string, r1: { peakRss: number }, r10: { peakRss: number }) => {
      const ratio = r10.peakRss / r1.peakRss;
      console.log(`CSV ${what} peak RSS: 1x ${(r1.peakRss / 1e6).toFixed(1)} MB, 10x ${(r10.peakRss / 1e6).toFixed(1)} MB, ratio ${ratio.toFixed(3)}`);
      assert.ok(ratio < RSS_GROWTH_LIMIT, `${what}: peak RSS grew ${ratio.toFixed(3)}x`);
    };
    // The reader alone, for the same work (10 passes over 1x, one over 10x), as in the image tree test: single
    // passes left the longer run 2-8% higher (1.083 once in a suite run) with nothing of the data held, as run
    // length, not input size, sets how far V8 and malloc grow. Holding the 10x file's values would be 1.25 GB.
    const r1 = await lower((f) => [f, '{"xDtype":"float64"}', '10'], small, { script });
    const r10 = await lower((f) => [f, '{"xDtype":"float64"}', '1'], big, { script });
    assert.match(r1.stdout, new RegExp(`samples=${100 * ROWS} `));
    assert.match(r10.stdout, new RegExp(`samples=${100 * ROWS} `));
    flat('reader (same work)', r1, r10);
    // The whole convert with a stratified split: a label pass, then the store pass (before the label pass parsed on
    // the main thread, its parser thread's isolate and arena made the 10x convert peak ~1.2x higher).
    const out = join(tmp.dir, 'rss-store');
    const convertArgs = (f: string) => ['convert', f, out, '--force', '--x-dtype', 'uint8', '--shape', '28,28', '--split', 'train=0.9,test=0.1'];
    const c1 = await lower(convertArgs, small);
    const c10 = await lower(convertArgs, big);
    const stored = (dir: string) => JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8')) as { splits: Record<string, { samples: number }> };
    const splits = stored(out).splits;
    assert.equal(splits.train.samples + splits.test.samples, 100 * ROWS);
    flat('convert --split', c1, c10);
  });
  it('the native line parser gives the JS parser\'s exact output on tricky text (values, dtypes, batches, skipped lines, warnings)', { skip: needsAddon('slimfit_csv') }, async () => {
    const { csvAddon } = await import('../src/formats/csv-native.ts');
    // A seeded mix of plain lines (ints, decimals, exponents, signs, CRLF) and lines the native loop must hand back.
    let seed = 12345;
    const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 4294967296; };
    const num = (): string => {
      const r = rnd();
      if (r < 0.4) return String(Math.floor(rnd() * 256));
      if (r < 0.55) return (rnd() * 300 - 20).toFixed(Math.floor(rnd() * 6));
      if (r < 0.65) return `${(rnd() * 10).toFixed(3)}e${Math.floor(rnd() * 9) - 4}`;
      if (r < 0.7) return `+${Math.floor(rnd() * 100)}`;
      if (r < 0.75) return `-${(rnd()).toFixed(2)}`;
      if (r < 0.78) return '0.1234567890123456789'; // too many digits: the JS path (Number) parses it
      if (r < 0.8) return `${Math.floor(rnd() * 9)}e30`;
      if (r < 0.82) return '70000.5'; // beyond float16
      if (r < 0.83) return '.5';
      if (r < 0.84) return '-0';
      return String(Math.floor(rnd() * 256));
    };
    const lines: string[] = ['label,a,b,c,d,e,f,g,h'];
    for (let i = 0; i < 40000; i++) {
      const r = rnd();
      const fields = [String(Math.floor(rnd() * 10) - (rnd() < 0.05 ? 20 : 0)), ...Array.from({ length: 8 }, num)];
      if (r < 0.02) lines.push('');
      else if (r < 0.03) lines.push('# comment');
      else if (r < 0.04) lines.push(fields.slice(0, 7).join(','));
      else if (r < 0.05) lines.push(fields.join(', '));
      else if (r < 0.06) lines.push(fields.join(',').replace(',', ',,'));
      else if (r < 0.065) lines.push(fields.join(',') + ',nan');
      else if (r < 0.07) lines.push(['3.5', ...fields.slice(1)].join(','));
      else if (r < 0.075) lines.push(['nan', ...fields.slice(1)].join(','));
      else if (r < 0.08) lines.push(' ' + fields.join(','));
      else lines.push(fields.join(',') + (rnd() < 0.1 ? '\r' : ''));
    }
    const comma = join(tmp.dir, 'tricky.csv');
    writeFileSync(comma, lines.join('\n')); // no final newline
    const spaced = join(tmp.dir, 'tricky.txt');
    writeFileSync(spaced, lines.slice(1).map((l) => l.replace(/,/g, rnd() < 0.5 ? ' ' : ' \t ')).join('\n') + '\n');
    const child = (path: string, opts: object, off: boolean) => {
      const r = spawnSync(process.execPath, [join(ROOT, 'test', 'csv-digest-child.mjs'), path, JSON.stringify(opts)], {
        encoding: 'utf8', env: { ...process.env, ...(off ? disableAlso('csv') : {}) },
      });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout);
    };
    for (const [path, extra] of [[comma, {}], [spaced, { delimiter: 'whitespace', header: false }]] as const) {
      for (const xDtype of ['uint8', 'float16', 'float32', 'float64']) {
        const opts = { ...extra, xDtype, batchRows: 777 };
        const js = child(path, opts, true);
        const nat = child(path, opts, false);
        assert.equal(js.native, false);
        assert.equal(nat.native, csvAddon() !== null);
        assert.ok(js.n > 30000 && js.skipped.length > 1000, `fixture is tricky enough (${js.n} rows, ${js.skipped.length} skipped)`);
        const { native: _a, ...jsRest } = js;
        const { native: _b, ...natRest } = nat;
        assert.deepEqual(natRest, jsRest, `${path} as ${xDtype}`);
      }
    }
  });
});
