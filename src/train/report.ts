// report.md for a training run: per-epoch metrics table, loss/accuracy curves and the confusion matrix (PNG + SVG).
import { join } from 'node:path';
import type { EpochLog, EvalResult } from './loop.ts';
import { writeAtomic } from '../core/write-atomic.ts';
import { confusionChart, lineChart, type SeriesPoint, writePlot } from './plot.ts';

/** Everything a run report shows. */
export interface ReportInput {
  title: string;
  /** Key/value facts printed at the top (model, data, backend, options...). */
  facts: Array<[string, string]>;
  history: EpochLog[];
  /** Final evaluation (e.g. the test split) and its split name. */
  evaluation?: { split: string; result: EvalResult };
  classNames: string[];
}

const f4 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(4));

/** What the callbacks did in an epoch: best so far saved, early stop, weights of an earlier epoch restored. */
function epochNote(e: EpochLog): string {
  const notes: string[] = [];
  if (e.bestSaved) notes.push('best so far (saved)');
  if (e.stoppedEarly) notes.push(`stopped early: ${e.stoppedEarly.monitor} best at epoch ${e.stoppedEarly.bestEpoch}`);
  if (e.restoredEpoch !== undefined) notes.push(`weights of epoch ${e.restoredEpoch} restored`);
  return notes.join('; ');
}

/** A markdown table of a confusion matrix (rows = true class, columns = predicted). */
export function confusionMarkdown(confusion: number[][], labels: string[]): string {
  const head = `| true \\ predicted | ${labels.join(' | ')} | recall |`;
  const sep = `|---|${labels.map(() => '---:').join('|')}|---:|`;
  const rows = confusion.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return `| **${labels[i]}** | ${row.join(' | ')} | ${total ? (row[i] / total).toFixed(4) : '–'} |`;
  });
  return [head, sep, ...rows].join('\n');
}

/** Write the confusion matrix of `result` as `<base>.png`, `<base>.svg` and `<base>.md`. */
export async function writeConfusion(result: EvalResult, labels: string[], base: string, title: string): Promise<void> {
  await writePlot(confusionChart(result.confusion, labels, title), base);
  await writeAtomic(`${base}.md`, `# ${title}\n\naccuracy ${result.accuracy.toFixed(4)} on ${result.samples} samples\n\n${confusionMarkdown(result.confusion, labels)}\n`);
}

/** Write report.md plus loss/accuracy plots (and the confusion matrix when evaluated) into `dir`; returns the report path. */
export async function writeReport(dir: string, r: ReportInput): Promise<string> {
  const lines: string[] = [`# ${r.title}`, ''];
  for (const [k, v] of r.facts) lines.push(`- **${k}**: ${v}`);
  lines.push('', '## Per-epoch metrics', '');
  lines.push('| epoch | lr | loss | accuracy | val loss | val accuracy | samples | seconds | samples/s | note |');
  lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const e of r.history) {
    lines.push(`| ${e.epoch} | ${e.lr === undefined ? '–' : e.lr.toPrecision(3)} | ${f4(e.loss)} | ${f4(e.accuracy)} | ${f4(e.valLoss)} | ${f4(e.valAccuracy)} | ${e.samples} | ${e.seconds.toFixed(1)} | ${e.samplesPerSec.toFixed(0)} | ${epochNote(e)} |`);
  }
  if (r.history.length) {
    const loss: SeriesPoint[] = [], acc: SeriesPoint[] = [];
    for (const e of r.history) {
      loss.push({ x: e.epoch, y: e.loss, series: 'train' });
      acc.push({ x: e.epoch, y: e.accuracy, series: 'train' });
      if (e.valLoss !== undefined) loss.push({ x: e.epoch, y: e.valLoss, series: 'validation' });
      if (e.valAccuracy !== undefined) acc.push({ x: e.epoch, y: e.valAccuracy, series: 'validation' });
    }
    await writePlot(lineChart(loss, { title: 'Loss per epoch', x: 'epoch', y: 'cross-entropy' }), join(dir, 'loss'));
    await writePlot(lineChart(acc, { title: 'Accuracy per epoch', x: 'epoch', y: 'accuracy' }), join(dir, 'accuracy'));
    lines.push('', '![loss](loss.png) ![accuracy](accuracy.png)', '', 'Vector versions: [loss.svg](loss.svg), [accuracy.svg](accuracy.svg).');
  }
  if (r.evaluation) {
    const { split, result } = r.evaluation;
    const base = `confusion-${split}`;
    await writeConfusion(result, r.classNames, join(dir, base), `Confusion matrix (${split})`);
    lines.push('', `## Evaluation on '${split}'`, '', `accuracy **${result.accuracy.toFixed(4)}**, loss ${result.loss.toFixed(4)}, ${result.samples} samples`, '');
    lines.push(`![confusion matrix](${base}.png)`, '', confusionMarkdown(result.confusion, r.classNames));
  }
  const path = join(dir, 'report.md');
  await writeAtomic(path, lines.join('\n') + '\n');
  return path;
}
