// Chart specs for the precision report (rendering reuses src/train/plot.ts: vega-lite -> SVG -> PNG via resvg).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writePlot, type VegaLiteSpec } from '../src/train/plot.ts';

/** One point of a line series. */
export interface Pt { x: number; y: number; series: string; facet?: string }

/** A multi-series line chart, optionally log-scaled and faceted into columns. */
export function lines(points: Pt[], o: { title: string; x: string; y: string; logX?: boolean; logY?: boolean; facet?: string; facetSort?: string[]; width?: number; height?: number; columns?: number }): VegaLiteSpec {
  const enc = {
    x: { field: 'x', type: 'quantitative', title: o.x, scale: o.logX ? { type: 'log' } : { zero: false } },
    y: { field: 'y', type: 'quantitative', title: o.y, scale: o.logY ? { type: 'log' } : { zero: false } },
    color: { field: 'series', type: 'nominal', title: null, legend: { labelLimit: 420 } },
  };
  const inner = { mark: { type: 'line', point: { size: 12 } }, encoding: enc, width: o.width ?? 300, height: o.height ?? 200 };
  const spec = o.facet
    ? { title: o.title, data: { values: points }, facet: { field: 'facet', type: 'nominal', title: o.facet, ...(o.facetSort ? { sort: o.facetSort } : {}) }, columns: o.columns ?? 3, spec: inner, resolve: { scale: { y: 'shared' } } }
    : { title: o.title, data: { values: points }, ...inner, width: o.width ?? 460, height: o.height ?? 260 };
  return { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', ...spec } as unknown as VegaLiteSpec;
}

/** A grouped bar chart: value per category, one colour per series. */
export function bars(points: { cat: string; y: number; series: string }[], o: { title: string; y: string; cat: string; logY?: boolean }): VegaLiteSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: o.title, data: { values: points }, width: 460, height: 240,
    mark: 'bar',
    encoding: {
      x: { field: 'cat', type: 'nominal', title: o.cat, sort: null },
      xOffset: { field: 'series' },
      y: { field: 'y', type: 'quantitative', title: o.y, scale: o.logY ? { type: 'log' } : {} },
      color: { field: 'series', type: 'nominal', title: null },
    },
  } as unknown as VegaLiteSpec;
}

/** Render `spec` to `<dir>/<name>.svg|png`; returns the markdown image line (relative to the report). */
export async function figure(spec: VegaLiteSpec, dir: string, sub: string, name: string, alt: string): Promise<string> {
  await mkdir(join(dir, sub), { recursive: true });
  await writePlot(spec, join(dir, sub, name));
  return `![${alt}](${sub}/${name}.png)`;
}
