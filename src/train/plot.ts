// Plots for reports: Vega-Lite specs compiled by vega-lite, rendered headless to SVG by vega, rasterized to PNG by resvg.
// The three are loaded on first use: importing them costs ~0.9 s, which every `import 'slimfit'` would otherwise pay.
import { writeAtomic } from '../core/write-atomic.ts';
import { createRequire } from 'node:module';
import type * as ResvgJs from '@resvg/resvg-js';
import type * as Vega from 'vega';
import type * as VegaLite from 'vega-lite';

/** A Vega-Lite top-level spec (the library's own type). */
export type VegaLiteSpec = VegaLite.TopLevelSpec;

let renderer: Promise<[typeof Vega, typeof VegaLite]> | null = null;

/** Render a Vega-Lite spec to an SVG string (no browser, no canvas). */
export async function toSvg(spec: VegaLiteSpec): Promise<string> {
  renderer ??= Promise.all([import('vega'), import('vega-lite')]);
  const [vega, vl] = await renderer;
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterize an SVG to PNG bytes (white background; `scale` 2 = twice the SVG's pixel size). */
export function svgToPng(svg: string, scale = 2): Buffer {
  const { Resvg } = createRequire(import.meta.url)('@resvg/resvg-js') as typeof ResvgJs;
  const r = new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: scale }, font: { loadSystemFonts: true } });
  return r.render().asPng();
}


/** Render `spec` and write `<base>.svg` and `<base>.png`; returns both paths. */
export async function writePlot(spec: VegaLiteSpec, base: string): Promise<{ svg: string; png: string }> {
  const svg = await toSvg(spec);
  await writeAtomic(`${base}.svg`, svg);
  await writeAtomic(`${base}.png`, svgToPng(svg));
  return { svg: `${base}.svg`, png: `${base}.png` };
}

/** One point of a line chart series. */
export interface SeriesPoint { x: number; y: number; series: string }

/** A line chart with one line per `series` value (e.g. train vs validation loss per epoch). */
export function lineChart(points: SeriesPoint[], opts: { title: string; x: string; y: string; width?: number; height?: number; yZero?: boolean }): VegaLiteSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: opts.title,
    width: opts.width ?? 420,
    height: opts.height ?? 260,
    data: { values: points },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: opts.x, axis: { tickMinStep: 1 } },
      y: { field: 'y', type: 'quantitative', title: opts.y, scale: { zero: opts.yZero ?? false } },
      color: { field: 'series', type: 'nominal', title: null },
    },
  } as VegaLiteSpec;
}

/** A confusion-matrix heatmap (rows = true class, columns = predicted) with counts written in the cells. */
export function confusionChart(confusion: number[][], labels: string[], title = 'Confusion matrix'): VegaLiteSpec {
  const values: Array<{ truth: string; predicted: string; count: number; rowFrac: number }> = [];
  confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((count, j) => values.push({ truth: labels[i] ?? String(i), predicted: labels[j] ?? String(j), count, rowFrac: count / total }));
  });
  const order = labels.length ? labels : confusion.map((_, i) => String(i));
  const size = Math.min(640, Math.max(240, 32 * order.length));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: size,
    height: size,
    data: { values },
    encoding: {
      x: { field: 'predicted', type: 'ordinal', sort: order, title: 'predicted' },
      y: { field: 'truth', type: 'ordinal', sort: order, title: 'true' },
    },
    layer: [
      { mark: 'rect', encoding: { color: { field: 'rowFrac', type: 'quantitative', title: 'share of row', scale: { scheme: 'blues', domain: [0, 1] } } } },
      {
        mark: { type: 'text', fontSize: order.length > 12 ? 7 : 10 },
        encoding: {
          text: { field: 'count', type: 'quantitative' },
          color: { condition: { test: 'datum.rowFrac > 0.5', value: 'white' }, value: 'black' },
        },
      },
    ],
  } as VegaLiteSpec;
}
