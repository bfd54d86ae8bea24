/**
 * The tables of a report as plain grids of strings, built once and drawn twice:
 * as monospace text for the console and as Markdown for BENCHMARKS.md.
 */
import type { Metric, Network } from '../scenarios/types.ts';
import {
  advantage,
  LIMIT_SYSTEM,
  medianOf,
  ranSystems,
  SUBJECT,
  type Results,
  type SystemScenarioResult,
} from './results.ts';

/** A table: a header row and body rows; `right` marks the numeric columns. */
export interface Grid {
  headers: string[];
  rows: string[][];
  right: boolean[];
}

/** A number with thousands separators and fixed decimals. */
export function formatNumber(value: number, digits: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A ratio like `1.52x`. */
export function formatRatio(value: number): string {
  return `${formatNumber(value, 2)}x`;
}

/** The system scenarios whose database was where `network` says (all of them when it is not given). */
function systemScenarios(results: Results, network?: Network): SystemScenarioResult[] {
  return results.scenarios.filter(
    (s): s is SystemScenarioResult => s.kind === 'system' && (network === undefined || (s.network ?? 'local') === network),
  );
}

/** Whether the run measured any scenario with the database one hop away. */
export function hasHopScenarios(results: Results): boolean {
  return systemScenarios(results, 'hop').length > 0;
}

interface Column {
  header: string;
  cell(system: string): string;
}

function metricColumn(scenario: SystemScenarioResult, metric: Metric): Column {
  return {
    header: `${scenario.short} ${metric.label}`,
    cell(system) {
      const outcome = scenario.systems[system];
      if (!outcome) return '-';
      const value = medianOf(scenario, system, metric.key);
      const failed = outcome.runs.filter((r) => !r.ok).length;
      // Runs that succeeded without this figure could not measure it here (PostgreSQL's CPU on a remote server).
      if (value === undefined) return failed < outcome.runs.length ? 'n/a' : 'failed';
      return formatNumber(value, metric.digits) + (failed > 0 ? ` (${failed} failed)` : '');
    },
  };
}

function limitColumn(scenario: SystemScenarioResult): Column {
  return {
    header: `${scenario.short} / Piscina`,
    cell(system) {
      const value = medianOf(scenario, system, 'jobsPerSecond');
      const limit = medianOf(scenario, LIMIT_SYSTEM, 'jobsPerSecond');
      return value === undefined || limit === undefined ? '-' : formatRatio(value / limit);
    },
  };
}

/**
 * Medians per system (rows) and scenario metric (columns), of the scenarios whose database was where
 * `network` says; CPU also as a ratio to bare Piscina.
 */
export function mediansGrid(results: Results, network: Network = 'local'): Grid {
  const columns: Column[] = [];
  for (const scenario of systemScenarios(results, network)) {
    for (const metric of scenario.metrics) columns.push(metricColumn(scenario, metric));
    if (scenario.short === 'CPU' && scenario.systems[LIMIT_SYSTEM]) columns.push(limitColumn(scenario));
  }
  return {
    headers: ['system', ...columns.map((c) => c.header)],
    rows: ranSystems(results).map((s) => [s.title, ...columns.map((c) => c.cell(s.name))]),
    right: [false, ...columns.map(() => true)],
  };
}

/** spindle's advantage over each peer per metric (> 1: spindle better), or undefined without spindle. */
export function ratiosGrid(results: Results, network: Network = 'local'): Grid | undefined {
  const peers = ranSystems(results).filter((s) => s.name !== SUBJECT);
  const scenarios = systemScenarios(results, network).filter((s) => medianOf(s, SUBJECT, s.metrics[0]!.key) !== undefined);
  if (scenarios.length === 0 || peers.length === 0) return undefined;
  const columns: Column[] = scenarios.flatMap((scenario) =>
    scenario.metrics.map((metric) => ({
      header: `${scenario.short} ${metric.label}`,
      cell(peer: string) {
        const ours = medianOf(scenario, SUBJECT, metric.key);
        const theirs = medianOf(scenario, peer, metric.key);
        return ours === undefined || theirs === undefined ? '-' : formatRatio(advantage(ours, theirs, metric));
      },
    })),
  );
  return {
    headers: ['spindle vs', ...columns.map((c) => c.header)],
    rows: peers.map((p) => [p.title, ...columns.map((c) => c.cell(p.name))]),
    right: [false, ...columns.map(() => true)],
  };
}

/** Draws a grid as aligned monospace text. */
export function gridToText(grid: Grid): string {
  const all = [grid.headers, ...grid.rows];
  const widths = grid.headers.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  const line = (row: string[]) =>
    row.map((cell, i) => (grid.right[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(grid.headers), widths.map((w) => '-'.repeat(w)).join('  '), ...grid.rows.map(line)].join('\n');
}

/** Draws a grid as a Markdown table. */
export function gridToMarkdown(grid: Grid): string {
  const escape = (cell: string) => cell.replaceAll('|', '\\|');
  return [
    `| ${grid.headers.map(escape).join(' | ')} |`,
    `|${grid.right.map((r) => (r ? '---:' : '---')).join('|')}|`,
    ...grid.rows.map((row) => `| ${row.map(escape).join(' | ')} |`),
  ].join('\n');
}
