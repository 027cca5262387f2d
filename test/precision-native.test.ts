// The native rounding kernels (native/quant.cc) against their JavaScript twins: the same bytes, counters and generator
// state for every format and rounding mode, the same update meters and optimizer steps, and a seeded lab run that
// gives the same results with the kernels on and off (SLIMFIT_DISABLE=quant). The JavaScript loops themselves are checked against numpy,
// ml_dtypes and torch in precision-formats, precision-mx and precision-int8.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsAddon, ROOT, tempDir } from '../dev/helpers.ts';
import {
  BF16, E2M1, E2M3, E3M2, E4M3, E5M2, FP16, FP32, NATIVE_MIN_LENGTH, fixedFormat, floatFormat, int8Format, newStats, quantize, quantizeSum, withOverflow,
  type Format, type QuantStats, type Rounding,
} from '../src/precision/formats.ts';
import { createRng, type Rng } from '../src/precision/rng.ts';
import { nativeQuant, setNativeQuant } from '../src/precision/native.ts';
import { MX_FORMATS, mxQuantize } from '../src/precision/mx.ts';
import { loadAddon } from '../src/engine/addon.ts';
import { DynamicFixedSite, staticSite, type Site } from '../lab/dynfixed.ts';
import { applyUpdate, updateScratch, type WeightSlot } from '../lab/update.ts';

const skip = needsAddon('slimfit_engine') || (nativeQuant() ? false : 'the engine addon predates native/quant.cc (run `npm run build:native`)');
const ROUNDINGS: Rounding[] = ['nearest', 'zero', 'stochastic'];

/** Run `f` once with the native kernels and once with JavaScript; returns both results. */
function both<T>(f: () => T): [T, T] {
  const was = setNativeQuant(true);
  try {
    const a = f();
    setNativeQuant(false);
    return [a, f()];
  } finally {
    setNativeQuant(was);
  }
}

const hex = (a: Float32Array | Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

/** Float32 bit patterns: NaNs with payloads and signs, ±inf, ±0, float32 subnormals, every exponent, and values at each format's ties and range edges. */
function edgeInputs(fmt: Format, seed: number): Float32Array {
  const rng = createRng(seed);
  const bits: number[] = [0x7fc00000, 0xffc00000, 0x7f800001, 0xff812345, 0x7fbfffff, 0x7f800000, 0xff800000, 0, 0x80000000, 1, 0x80000001, 0x007fffff, 0x807fffff, 0x00800000, 0x7f7fffff, 0xff7fffff];
  for (let e = 0; e < 255; e++) for (let k = 0; k < 6; k++) bits.push(((rng.u32() & 0x80000000) | (e << 23) | (rng.u32() & 0x7fffff)) >>> 0);
  const vals: number[] = [];
  const max = fmt.kind === 'int8' ? (fmt.scale ?? 1) * 127 : fmt.maxFinite;
  const tiny = fmt.kind === 'int8' ? (fmt.scale ?? 0.01) : fmt.minSubnormal;
  for (const s of [1, -1]) {
    for (const m of [0.5, 0.999, 1, 1.0001, 1.5, 2, 1e3]) vals.push(s * max * m);
    // multiples of half the smallest step (ties) and their float32 neighbours, in the subnormal / smallest-code range
    for (let k = 0; k < 40; k++) { const v = s * tiny * k / 2; vals.push(v, v * (1 + 2 ** -23), v * (1 - 2 ** -23)); }
  }
  for (let k = 0; k < 1500; k++) vals.push(rng.normal() * 2 ** ((rng.u32() % 48) - 32));
  for (let k = 0; k < 800; k++) vals.push(rng.normal() * max / 4);
  const out = new Float32Array(bits.length + vals.length);
  new Uint32Array(out.buffer, 0, bits.length).set(bits);
  out.set(vals, bits.length);
  return out;
}

const FORMATS: Format[] = [
  fixedFormat(4, 12), fixedFormat(1, 15), fixedFormat(8, 8), fixedFormat(2, 20), fixedFormat(16, 16), fixedFormat(1, 1),
  int8Format(), int8Format(0.003), FP16, BF16, E4M3, withOverflow(E4M3, 'saturate'), E5M2, withOverflow(E5M2, 'nan'), withOverflow(FP16, 'saturate'),
  E3M2, E2M3, E2M1, floatFormat(8, 22), floatFormat(3, 1), floatFormat(6, 9, { special: 'fn' }), FP32,
];

test('quantize: native and JavaScript give the same bytes, counters and generator state (every format, rounding, edge value)', { skip }, () => {
  for (const fmt of FORMATS) {
    for (const rounding of ROUNDINGS) {
      const x = edgeInputs(fmt, 5);
      assert.ok(x.length >= NATIVE_MIN_LENGTH);
      for (const inPlace of [false, true]) {
        const [n, j] = both(() => {
          const rng = createRng(42);
          rng.u32(); // a generator mid-stream
          const stats = newStats();
          const input = x.slice();
          const out = quantize(fmt, input, { rounding, rng, stats, out: inPlace ? input : undefined });
          return { out: hex(out), stats, state: Array.from(rng.state) };
        });
        const what = `${fmt.name} ${rounding}${inPlace ? ' in place' : ''}`;
        assert.equal(n.out, j.out, `${what}: bytes`);
        assert.deepEqual(n.stats, j.stats, `${what}: counters`);
        assert.deepEqual(n.state, j.state, `${what}: generator state`);
      }
    }
  }
});

test('quantizeSum: native and JavaScript round the exact sums alike (round-to-odd stage included)', { skip }, () => {
  for (const fmt of FORMATS) {
    if (fmt.kind === 'int8') continue;
    for (const rounding of ROUNDINGS) {
      const a = edgeInputs(fmt, 9);
      const rng0 = createRng(3);
      // increments: tiny (below the step), ties, same size, overflowing, NaN/inf from the other operand
      const b = Float32Array.from(a, (v, i) => (i % 7 === 0 ? -v : i % 5 === 0 ? v * 2 ** -12 : rng0.normal() * 2 ** ((rng0.u32() % 40) - 30)));
      const [n, j] = both(() => {
        const rng = createRng(7);
        const stats: QuantStats = newStats();
        const out = quantizeSum(fmt, a, b, { rounding, rng, stats });
        return { out: hex(out), stats, state: Array.from(rng.state) };
      });
      assert.equal(n.out, j.out, `${fmt.name} ${rounding}: bytes`);
      assert.deepEqual(n.stats, j.stats, `${fmt.name} ${rounding}: counters`);
      assert.deepEqual(n.state, j.state, `${fmt.name} ${rounding}: generator state`);
    }
  }
});

test('mxQuantize: native and JavaScript give the same bytes and counters (every MX format, both axes, ragged blocks, NaN/inf blocks)', { skip }, () => {
  const x = edgeInputs(FP16, 13).subarray(0, 70 * 45); // every exponent, NaN/inf and ties; 70 = 2 blocks of 32 + 6
  for (const fmt of new Set(Object.values(MX_FORMATS))) {
    for (const [shape, axis] of [[[70, 45], 0], [[45, 70], 1], [[3150], 0]] as [number[], number][]) {
      for (const inPlace of [false, true]) {
        const scaled = Float32Array.from(x, (v, i) => (i % 3 === 0 ? v * 2 ** -40 : v)); // blocks of tiny values too
        const [n, j] = both(() => {
          const stats = newStats();
          const input = scaled.slice();
          const out = mxQuantize(fmt, input, { shape, axis }, { stats, out: inPlace ? input : undefined });
          return { out: hex(out), stats };
        });
        const what = `${fmt.name} [${shape}] axis ${axis}${inPlace ? ' in place' : ''}`;
        assert.equal(n.out, j.out, `${what}: bytes`);
        assert.deepEqual(n.stats, j.stats, `${what}: counters`);
      }
    }
  }
});

// With AVX-512 the native rounding and fused update take 8-wide loops; the scalar loops they replace are the ones the
// comparisons above ran on other CPUs. Run those two comparisons again with the ISA capped, in a child process (the cap
// is read once, when the addon starts).
test('the scalar native loops (SLIMFIT_ISA=generic) pass the same comparisons where the CPU has AVX-512', { skip: skip || (loadAddon().addon?.info().isa !== 'avx512' && 'no AVX-512 here: the comparisons above ran the scalar loops') }, () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-name-pattern=^(quantize|applyUpdate): native and JavaScript', join(ROOT, 'test', 'precision-native.test.ts')],
    { cwd: ROOT, encoding: 'utf8', env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')), SLIMFIT_ISA: 'generic' }, timeout: 120_000 });
  assert.equal(r.status, 0, r.stdout.slice(-3000) + r.stderr);
  assert.match(r.stdout, /^# pass 2$/m); // NODE_TEST_CONTEXT removed: the child prints its own report instead of streaming it to this runner
});

test('applyUpdate: native and JavaScript give the same weights, master copy, compensation, meters and generator state', { skip }, () => {
  // a site of the very format object passed along takes the fused loop (updateFused, for formats of at most 22 bits:
  // fixed<4,12> here, its AVX-512 version where the CPU has it); an equal but separate object takes the general loops
  const fx412 = fixedFormat(4, 12), fx1616 = fixedFormat(16, 16);
  const sites: [string, () => Site, Format | null][] = [
    ['fixed<4,12>', () => staticSite(fx412), fx412],
    ['fixed<4,12> (general loops)', () => staticSite(fixedFormat(4, 12)), fixedFormat(4, 12)],
    ['bf16', () => staticSite(BF16), BF16],
    ['e4m3', () => staticSite(E4M3), E4M3],
    ['fp16(sat)', () => staticSite(withOverflow(FP16, 'saturate')), withOverflow(FP16, 'saturate')],
    ['fixed<16,16>', () => staticSite(fx1616), fx1616],
    ['fp32', () => staticSite(FP32), FP32],
    ['dynamic', () => new DynamicFixedSite({ wl: 12 }), null],
  ];
  for (const [name, mkSite, fmt] of sites) {
    for (const rounding of ROUNDINGS) {
      for (const master of [false, true]) {
        for (const kahan of [false, true]) {
          const [n, j] = both(() => {
            const rng: Rng = createRng(11);
            const site = mkSite();
            const n0 = 3005; // not a multiple of the vector width: the SIMD loops' tails run too
            const init = new Float32Array(n0);
            for (let i = 0; i < n0; i++) init[i] = rng.normal() * 0.5;
            // weights at the top of the range with increments past it (the expectation leaves the range there)
            if (fmt && fmt.kind !== 'int8') for (let i = 0; i < 40; i++) init[i] = (i % 2 ? -1 : 1) * fmt.maxFinite;
            const stored = site.quantize(init, {});
            const slot: WeightSlot = { stored, master: master ? init.slice() : null, comp: kahan ? new Float32Array(n0) : null };
            const scratch = updateScratch(n0);
            const meters = [];
            for (let step = 0; step < 3; step++) {
              const u = new Float32Array(n0);
              for (let i = 0; i < n0; i++) u[i] = i % 9 === 0 ? 0 : rng.normal() * 2 ** -(8 + (i % 12));
              // step 0 stays inside the range (its meters are finite: compared for real); step 1 pushes past it
              if (step >= 1) for (let i = 0; i < 40; i++) u[i] = (i % 2 ? -1 : 1) * (fmt && fmt.kind !== 'int8' ? fmt.maxFinite : 1) * 2 ** -4;
              // non-finite increments in the last step only: from then on every meter sum is NaN, which would compare equal
              if (step === 2) { u[50] = NaN; u[51] = Infinity; u[52] = -Infinity; }
              const { meter } = applyUpdate(slot, u, site, fmt, rounding, rng, scratch);
              meters.push(meter);
            }
            return { stored: hex(slot.stored), master: slot.master && hex(slot.master), comp: slot.comp && hex(slot.comp), meters, state: Array.from(rng.state) };
          });
          const what = `${name} ${rounding} master=${master} kahan=${kahan}`;
          assert.equal(n.stored, j.stored, `${what}: stored`);
          assert.equal(n.master, j.master, `${what}: master`);
          assert.equal(n.comp, j.comp, `${what}: compensation`);
          assert.deepEqual(n.meters, j.meters, `${what}: meters`);
          // step 1 stops and restarts the fused loop at every expectation outside the range; fixed point saturates, so its meters stay finite
          if (fmt?.kind === 'fixed') assert.ok(Number.isFinite(n.meters[1].lostExpected) && Number.isFinite(n.meters[1].lostRealized), `${what}: finite meters in step 1`);
          assert.ok(Number.isFinite(n.meters[0].mass) && Number.isFinite(n.meters[0].lostRealized) && (Number.isFinite(n.meters[0].lostExpected) || (fmt === null && rounding === 'stochastic')), `${what}: finite meters in step 0`); // no expectation is metered for a dynamic site's stochastic rounding
          assert.deepEqual(n.state, j.state, `${what}: generator state`);
        }
      }
    }
  }
});

test('trainer steps (sgd, momentum, Adam; fp32 and bf16 state; loss scaling; dynamic fixed point; FP8 delayed scaling): native and JavaScript give the same weights and reports', { skip }, async () => {
  const { initTf, tf } = await import('../lab/tf.ts');
  const { buildMlp } = await import('../lab/run.ts');
  const { createTrainer } = await import('../lab/train.ts');
  await initTf();
  const recipes = [
    { opt: { kind: 'sgd' as const, lr: 0.05 }, prec: { weights: fixedFormat(4, 12), rounding: 'stochastic' as const, grads: fixedFormat(4, 12), gradRounding: 'stochastic' as const } },
    { opt: { kind: 'momentum' as const, lr: 0.02 }, prec: { weights: BF16, rounding: 'nearest' as const, state: BF16, kahan: true, lossScale: { kind: 'dynamic' as const, init: 2 ** 8, interval: 2 } } },
    { opt: { kind: 'adam' as const, lr: 1e-3, decay: { steps: 4 } }, prec: { weights: E4M3, rounding: 'stochastic' as const, master: true, state: FP16, stateRounding: 'stochastic' as const, grads: E5M2 } },
    { opt: { kind: 'adam' as const, lr: 1e-3 }, prec: { weights: FP16, rounding: 'nearest' as const, activations: BF16, grads: FP16, lossScale: { kind: 'static' as const, scale: 2 ** 20 } } },
    // dynamic fixed point (gupta2015's dfxp cells) and FP8 delayed scaling (the fp8 section)
    { opt: { kind: 'sgd' as const, lr: 0.05 }, prec: { weights: FP32, rounding: 'stochastic' as const, gradRounding: 'stochastic' as const, actRounding: 'stochastic' as const, dynamic: { wl: 12, maxOverflowRate: 1e-3 } } },
    { opt: { kind: 'adam' as const, lr: 1e-3 }, prec: { weights: E4M3, rounding: 'nearest' as const, master: true, activations: E4M3, errors: E5M2, scaled: { history: 4 } } },
  ];
  for (const { opt, prec } of recipes) {
    const [n, j] = both(() => {
      const tr = createTrainer(buildMlp(20, [80], 4, 5), opt, { seed: 2, ...prec });
      const reports = [];
      for (let s = 0; s < 4; s++) {
        // (seed 0 would mean "unseeded" to tfjs)
        const x = tf.randomNormal([32, 20], 0, 1, 'float32', 100 + s), y = tf.cast(tf.oneHot(tf.randomUniform([32], 0, 4, 'int32', 200 + s), 4), 'float32');
        const r = tr.step(x, y);
        // layer names count up per model built in the process
        reports.push({ ...r, vars: r.vars.map(({ name: _, ...v }) => v) });
        tf.dispose([x, y]);
      }
      return { reports, weights: tr.stored().map(hex) };
    });
    assert.deepEqual(n.reports, j.reports, `${opt.kind}: reports`);
    assert.deepEqual(n.weights, j.weights, `${opt.kind}: stored weights`);
  }
});

test('seeded lab runs (gupta2015 and fp8, --tiny) give the same results with the native kernels on and off (SLIMFIT_DISABLE=quant)', { skip }, () => {
  const { dir, cleanup } = tempDir('slimfit-lab-native-');
  const run = (section: string, args: string[], name: string, env: Record<string, string>) => {
    const out = join(dir, name);
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'lab', 'main.ts'), section, '--tiny', '--seeds', '1', ...args, '--out', out],
      { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    // wall-clock seconds are the one field that may differ
    return JSON.parse(readFileSync(join(out, 'precision', `${section}.json`), 'utf8'), (k, v) => (k === 'seconds' ? undefined : v));
  };
  try {
    const gupta = ['--fl', '8', '--net', 'mlp', '--no-float', '--epochs', '1'];
    const on = run('gupta2015', gupta, 'gupta-native', {});
    const off = run('gupta2015', gupta, 'gupta-js', { SLIMFIT_DISABLE: 'quant' });
    assert.ok(on.cells.length >= 3, 'nearest, stochastic and dynamic cells');
    assert.deepEqual(on, off);
    // E4M3/E5M2 sites with delayed scaling, and MXFP8/MXFP4 blocks: the fallback pass of CI does not rerun the fp8 section
    const fp8 = ['--only', 'fp8,mxfp8,mxfp4'];
    const on8 = run('fp8', fp8, 'fp8-native', {});
    const off8 = run('fp8', fp8, 'fp8-js', { SLIMFIT_DISABLE: 'quant' });
    assert.ok(JSON.stringify(on8).length > 200, 'an fp8 result was written');
    assert.deepEqual(on8, off8);
  } finally {
    cleanup();
  }
});
