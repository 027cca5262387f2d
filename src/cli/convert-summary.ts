// The table `convert` prints at the end: per split and class counts, skipped inputs, duplicates, leakage, time, memory.
import Table from 'cli-table3';
import type { ConversionReport } from '../store/write.ts';
import { formatBytes } from '../core/rss.ts';

/** Print a conversion's summary to `to` (stdout; stderr with --json, where stdout holds only the JSON result). */
export function printConversionSummary(r: ConversionReport, to: NodeJS.WritableStream = process.stdout): void {
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
  if (r.duplicates.dropped) out.push(`dropped by --dedupe: ${r.duplicates.dropped}`);
  if (r.skipped.length) {
    out.push(`skipped inputs: ${r.skipped.length}`);
    for (const s of r.skipped.slice(0, 20)) out.push(`  ${s.path}: ${s.reason}`);
    if (r.skipped.length > 20) out.push(`  ... (${r.skipped.length - 20} more listed in dataset.json)`);
  }
  const rate = r.bytesIn > 0 ? `, ${formatBytes(r.bytesIn / r.seconds)}/s in` : '';
  out.push(`wrote ${r.dir}: ${formatBytes(r.bytesOut)} in ${r.seconds.toFixed(1)} s${rate}, peak RSS ${formatBytes(r.peakRss)}`);
  to.write(out.join('\n') + '\n');
}
