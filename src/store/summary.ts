// A readable summary of a store's manifest (what `slimfit info` prints).
import Table from 'cli-table3';
import { formatBytes } from '../core/rss.ts';
import type { Manifest } from './manifest.ts';

function fieldText(f: { dtype: string; shape: number[] }): string {
  return `${f.dtype} [${f.shape.join(', ')}]`;
}

/** A statistic for display; stores written before non-finite values were left out hold null (JSON's NaN/inf) there. */
function round(v: unknown): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return 'n/a';
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

function list(v: unknown): string {
  return Array.isArray(v) ? v.map(round).join(', ') : 'n/a';
}

/** Human-readable multi-line description of a store: fields, splits, class counts, stats, provenance. */
export function summarizeStore(dir: string, m: Manifest): string {
  const lines: string[] = [];
  lines.push(`slimfit store ${dir} (format version ${m.version})`);
  lines.push(`  x: ${fieldText(m.fields.x)}   y: ${fieldText(m.fields.y)}`);
  if (m.classNames) lines.push(`  classes (${m.classNames.length}): ${m.classNames.join(', ')}`);
  const splits = new Table({ head: ['split', 'samples', 'shards', 'bytes'], style: { head: [], border: [], compact: true } });
  for (const [name, s] of Object.entries(m.splits)) {
    const bytes = s.shards.reduce((a, sh) => a + sh.x.bytes + sh.y.bytes, 0);
    splits.push([name, s.samples, s.shards.length, formatBytes(bytes)]);
  }
  lines.push(splits.toString());
  const withCounts = Object.entries(m.splits).filter(([, s]) => s.classCounts);
  if (withCounts.length) {
    const n = Math.max(...withCounts.map(([, s]) => s.classCounts!.length));
    const t = new Table({ head: ['class', ...withCounts.map(([k]) => k)], style: { head: [], border: [], compact: true } });
    for (let c = 0; c < n; c++) t.push([m.classNames?.[c] ?? String(c), ...withCounts.map(([, s]) => s.classCounts![c] ?? 0)]);
    lines.push('samples per class:');
    lines.push(t.toString());
  }
  if (m.stats) {
    lines.push(`stats (${m.stats.split}): mean ${list(m.stats.mean)}  std ${list(m.stats.std)}  min ${round(m.stats.min)}  max ${round(m.stats.max)}`);
  }
  const nonFinite = Object.entries(m.splits).filter(([, s]) => s.nonFinite);
  if (nonFinite.length) lines.push(`NaN or infinite x values (left out of the stats): ${nonFinite.map(([k, s]) => `${k} ${s.nonFinite}`).join(', ')}`);
  const p = m.provenance;
  lines.push(`made by ${p.tool} at ${p.createdAt} from ${p.sources.join(', ')}`);
  if (p.split) lines.push(`splits: ${p.split}`);
  const d = p.duplicates as { within: Record<string, number>; across: Record<string, number>; dropped: number; list?: string } | undefined;
  if (d) {
    const within = Object.entries(d.within).map(([k, v]) => `${k} ${v}`).join(', ');
    const across = Object.entries(d.across).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
    lines.push(`exact duplicates within splits: ${within}; shared across splits: ${across}${d.dropped ? `; dropped ${d.dropped}` : ''}${d.list ? ` (copies listed in ${d.list})` : ''}`);
  }
  const skippedCount = (p.skippedCount as number | undefined) ?? p.skipped?.length ?? 0;
  if (skippedCount) {
    lines.push(`skipped inputs: ${skippedCount}`);
    for (const s of (p.skipped ?? []).slice(0, 10)) lines.push(`  ${s.path}: ${s.reason}`);
    if (skippedCount > 10) lines.push(`  ... (${skippedCount - 10} more in dataset.json)`);
  }
  return lines.join('\n');
}
