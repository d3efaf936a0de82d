/**
 * Charts as SVG from Vega-Lite specs, rendered headless by vega's own SVG
 * renderer (no canvas, no browser, no native module).
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // Vega-Lite warns that faceted independent scales share a field: intended here, and it would break the progress bar.
  const view = new vega.View(vega.parse(vl.compile(spec, { logger: vega.logger(vega.None) }).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

type Row = Record<string, unknown>;

/** A line chart of y over x, one line per `color`, one panel per `facet` value (independent y scales: emulated and native differ by ~100x). */
export function lineChart(o: { title: string; rows: Row[]; x: string; xTitle: string; xLog?: boolean; y: string; yTitle: string; yLog?: boolean; color: string; facet?: string }): TopLevelSpec {
  const inner = {
    mark: { type: 'line' as const, point: true },
    encoding: {
      x: { field: o.x, type: 'quantitative' as const, title: o.xTitle, scale: o.xLog ? { type: 'log' as const } : { zero: false } },
      y: { field: o.y, type: 'quantitative' as const, title: o.yTitle, scale: o.yLog ? { type: 'log' as const } : {} },
      color: { field: o.color, type: 'nominal' as const, title: null },
      strokeDash: { field: 'offload', type: 'nominal' as const, title: 'offload' },
    },
    width: 360,
    height: 240,
  };
  const base = { $schema: 'https://vega.github.io/schema/vega-lite/v5.json', title: o.title, data: { values: o.rows }, background: 'white' };
  return (o.facet ? { ...base, facet: { column: { field: o.facet, type: 'nominal', title: null } }, spec: inner, resolve: { scale: { y: 'independent' } } } : { ...base, ...inner }) as TopLevelSpec;
}

/** Horizontal bars of `x` per `y` label, one panel per `facet`, with the value printed at the end of each bar. */
export function barChart(o: { title: string; rows: Row[]; x: string; xTitle: string; y: string; color: string; facet: string }): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: o.title,
    background: 'white',
    data: { values: o.rows },
    facet: { row: { field: o.facet, type: 'nominal', title: null } },
    resolve: { scale: { x: 'independent', y: 'independent' } },
    spec: {
      width: 420,
      encoding: {
        y: { field: o.y, type: 'nominal', title: null, sort: null },
        x: { field: o.x, type: 'quantitative', title: o.xTitle },
      },
      layer: [
        { mark: 'bar', encoding: { color: { field: o.color, type: 'nominal', title: 'offload' } } },
        { mark: { type: 'text', align: 'left', dx: 3 }, encoding: { text: { field: o.x, type: 'quantitative', format: '.3~g' } } },
      ],
    },
  } as TopLevelSpec;
}
