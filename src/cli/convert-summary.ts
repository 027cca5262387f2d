// The table `convert` prints at the end: per split and class counts, skipped inputs, duplicates, leakage, time, memory.
import { join } from 'node:path';
import Table from 'cli-table3';
import type { ConversionReport } from '../store/write.ts';
import { MAX_LISTED_COPIES, MAX_LISTED_GROUPS } from '../store/dup-list.ts';
import { formatBytes } from '../core/rss.ts';

/**
 * For a text (CSV) input whose values are all whole numbers 0..255: the flags that store it as uint8 images
 * (`--shape S,S,1|3` when the row length is a square or 3 x a square, `--x-dtype uint8`), else null.
 */
export function suggestedFlags(r: ConversionReport): string | null {
  const f = r.fitsUint8;
  if (!f) return null;
  return [f.shape ? `--shape ${f.shape.join(',')}` : '', '--x-dtype uint8'].filter(Boolean).join(' ');
}

/** Print a conversion's summary to `to` (stdout; stderr with --json, where stdout holds only the JSON result). */
export function printConversionSummary(r: ConversionReport, to: NodeJS.WritableStream = process.stdout, o: { text?: boolean; command?: string } = {}): void {
  const m = r.manifest;
  const names = Object.keys(m.splits);
  const t = new Table({ head: ['', ...names], style: { head: [], border: [], compact: true } });
  t.push(['samples', ...names.map((n) => m.splits[n].samples)]);
  t.push(['shards', ...names.map((n) => m.splits[n].shards.length)]);
  t.push(['duplicates within', ...names.map((n) => r.duplicates.within[n] ?? 0)]);
  const counts = names.map((n) => m.splits[n].classCounts);
  const nClasses = Math.max(0, ...counts.map((c) => c?.length ?? 0));
  if (nClasses > 0 && nClasses <= 100) {
    for (let c = 0; c < nClasses; c++) t.push([`class ${m.classNames?.[c] ?? c}`, ...counts.map((cc) => cc?.[c] ?? 0)]);
  }
  const out: string[] = [t.toString()];
  const across = Object.entries(r.duplicates.across);
  out.push(`leakage (same sample in two splits): ${across.length ? across.map(([k, v]) => `${k}: ${v}`).join(', ') : 'none'}`);
  const d = r.duplicates;
  if (d.list) {
    const ex = r.duplicateExamples ?? [];
    out.push(`${d.groups} sample(s) have more than one copy; their copies are listed in ${join(r.dir, d.list)} (up to ${MAX_LISTED_GROUPS} samples and ${MAX_LISTED_COPIES} later copies)${ex.length ? `, e.g.:` : ''}`);
    for (const e of ex) out.push(`  ${e}`);
  }
  if (d.droppedFrom) {
    const from = Object.entries(d.droppedFrom).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ');
    out.push(`dropped by --dedupe: ${d.dropped} (the later copies in input order; the first copy stays)${from ? `, from ${from}` : ''}; samples after dropping: ${names.map((n) => `${n} ${m.splits[n].samples}`).join(', ')}`);
  }
  if (r.skipped.length) {
    out.push(`skipped inputs: ${r.skipped.length}`);
    for (const s of r.skipped.slice(0, 20)) out.push(`  ${s.path}: ${s.reason}`);
    if (r.skipped.length > 20) out.push(`  ... (${r.skipped.length - 20} more listed in dataset.json)`);
  }
  const flags = o.text ? suggestedFlags(r) : null;
  if (flags) {
    const shape = r.fitsUint8?.shape;
    out.push(`tip: every value is a whole number from 0 to 255, so ${flags} stores it exactly` +
      (shape ? ` as ${shape[0]}x${shape[1]} ${shape[2] === 3 ? 'RGB' : 'gray'} images (what the cnn and \`slimfit show\` need)` : '') +
      ` in ${r.manifest.fields.x.dtype === 'float64' ? 'an eighth' : r.manifest.fields.x.dtype === 'float32' || r.manifest.fields.x.dtype.endsWith('32') ? 'a quarter' : 'half'} of the space${o.command ? `: ${o.command} ${flags} --force` : ''}`);
  }
  const rate = r.bytesIn > 0 ? `, ${formatBytes(r.bytesIn / r.seconds)}/s in` : '';
  out.push(`wrote ${r.dir}: ${formatBytes(r.bytesOut)} in ${r.seconds.toFixed(1)} s${rate}, peak RSS ${formatBytes(r.peakRss)}`);
  to.write(out.join('\n') + '\n');
}

/**
 * The result `convert --json` prints (and `merge --json`, which adds its own keys): counts, duplicates, the CSV tip.
 *
 * @example
 * printJson({ ...conversionJson(report, { text: true, seconds }), parts: 3 });
 */
export function conversionJson(r: ConversionReport, o: { text?: boolean; seconds?: number } = {}): Record<string, unknown> {
  const splits = r.manifest.splits;
  return {
    out: r.dir,
    samples: Object.fromEntries(Object.entries(splits).map(([k, s]) => [k, s.samples])),
    shards: Object.fromEntries(Object.entries(splits).map(([k, s]) => [k, s.shards.length])),
    classNames: r.manifest.classNames ?? null,
    skipped: Number(r.manifest.provenance.skippedCount ?? r.skipped.length),
    duplicatesWithin: r.duplicates.within,
    leakage: r.duplicates.across,
    droppedByDedupe: r.duplicates.dropped,
    droppedFrom: r.duplicates.droppedFrom ?? null,
    duplicateList: r.duplicates.list ? join(r.dir, r.duplicates.list) : null,
    suggestedFlags: o.text ? suggestedFlags(r) : null,
    nonFinite: r.nonFinite,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    seconds: o.seconds ?? r.seconds,
    peakRssBytes: r.peakRss,
  };
}

/** Warn on stderr about x values that are NaN or infinite (left out of the statistics), one line per split. */
export function warnNonFinite(r: ConversionReport): void {
  for (const [split, n] of Object.entries(r.nonFinite)) {
    process.stderr.write(`slimfit: warning: ${r.dir}: ${n} value(s) of x in split ${split} are NaN or infinite; they are left out of the statistics (mean/std) and recorded in dataset.json; --strict refuses them\n`);
  }
}
