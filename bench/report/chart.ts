/**
 * bench/results/chart.svg, drawn by hand: one panel of horizontal bars per
 * system scenario. Throughput panels are linear; latency spans three orders of
 * magnitude between systems, so its panel is on a log scale (and says so).
 */
import { formatNumber } from './grid.ts';
import { LIMIT_SYSTEM, medianOf, ranSystems, SUBJECT, type Results, type SystemScenarioResult } from './results.ts';

const WIDTH = 760;
const LABEL_WIDTH = 190;
const BAR_WIDTH = 440;
const ROW = 22;
const BAR = 14;
const PANEL_TITLE = 28;
const PANEL_GAP = 18;
const COLOR = { subject: '#d9480f', peer: '#4263eb', limit: '#868e96' };

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function colorOf(system: string): string {
  return system === SUBJECT ? COLOR.subject : system === LIMIT_SYSTEM ? COLOR.limit : COLOR.peer;
}

interface Bar {
  system: string;
  label: string;
  value: number;
  text: string;
  faint?: boolean;
}

interface Panel {
  title: string;
  bars: Bar[];
  log: boolean;
}

function panels(results: Results): Panel[] {
  const systems = ranSystems(results);
  const list: Panel[] = [];
  for (const scenario of results.scenarios) {
    // The chart shows the local scenarios; those one hop away are in the tables.
    if (scenario.kind !== 'system' || (scenario.network ?? 'local') !== 'local') continue;
    const s: SystemScenarioResult = scenario;
    if (s.id === 'latency') {
      const bars: Bar[] = [];
      for (const sys of systems) {
        const p50 = medianOf(s, sys.name, 'p50Ms');
        const p99 = medianOf(s, sys.name, 'p99Ms');
        if (p50 !== undefined) bars.push({ system: sys.name, label: `${sys.title} p50`, value: p50, text: `${formatNumber(p50, 2)} ms` });
        if (p99 !== undefined) bars.push({ system: sys.name, label: 'p99', value: p99, text: `${formatNumber(p99, 2)} ms`, faint: true });
      }
      list.push({ title: `${s.title}, ms (log scale; shorter is better)`, bars, log: true });
      continue;
    }
    const metric = s.metrics[0]!;
    const bars: Bar[] = [];
    for (const sys of systems) {
      const value = medianOf(s, sys.name, metric.key);
      if (value !== undefined) bars.push({ system: sys.name, label: sys.title, value, text: formatNumber(value, metric.digits) });
    }
    list.push({ title: `${s.title}, ${metric.label} (longer is better)`, bars, log: false });
  }
  return list.filter((p) => p.bars.length > 0);
}

function barLength(panel: Panel, value: number): number {
  if (!panel.log) {
    const max = Math.max(...panel.bars.map((b) => b.value));
    return max > 0 ? (value / max) * BAR_WIDTH : 0;
  }
  // Decades from 0.1 ms up to the largest value.
  const low = Math.log10(0.1);
  const high = Math.max(Math.log10(Math.max(...panel.bars.map((b) => b.value))), low + 1);
  return Math.max(2, ((Math.log10(Math.max(value, 0.1)) - low) / (high - low)) * BAR_WIDTH);
}

/** The chart as an SVG document. */
export function chartSvg(results: Results): string {
  const parts: string[] = [];
  let y = 40;
  for (const panel of panels(results)) {
    parts.push(`<text x="12" y="${y + 18}" class="panel">${escapeXml(panel.title)}</text>`);
    y += PANEL_TITLE;
    for (const bar of panel.bars) {
      const length = barLength(panel, bar.value);
      const top = y + (ROW - BAR) / 2;
      parts.push(
        `<text x="${LABEL_WIDTH - 8}" y="${y + 15}" class="label" text-anchor="end">${escapeXml(bar.label)}</text>`,
        `<rect x="${LABEL_WIDTH}" y="${top}" width="${length.toFixed(1)}" height="${BAR}" fill="${colorOf(bar.system)}"${bar.faint ? ' fill-opacity="0.45"' : ''}/>`,
        `<text x="${(LABEL_WIDTH + length + 6).toFixed(1)}" y="${y + 15}" class="value">${escapeXml(bar.text)}</text>`,
      );
      y += ROW;
    }
    y += PANEL_GAP;
  }
  const subtitle = `${results.machine.cores} cores, ${results.machine.cpuModel}; Node ${results.machine.node}; PostgreSQL ${results.database.version}; medians of ${results.runs} runs${results.quick ? ' (quick sizes)' : ''}; ${results.generatedAt.slice(0, 10)}`;
  const height = y + 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    '<style>.title{font-size:16px;font-weight:600;fill:#212529}.sub{font-size:11px;fill:#495057}.panel{font-size:13px;font-weight:600;fill:#212529}.label{font-size:12px;fill:#343a40}.value{font-size:11px;fill:#343a40}</style>',
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="12" y="20" class="title">spindle and its peers on one PostgreSQL</text>`,
    `<text x="12" y="34" class="sub">${escapeXml(subtitle)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
