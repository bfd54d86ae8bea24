/**
 * The report of scenarios 10a-10c (issue 25): the medians with the database one hop away, beside
 * the local table; spindle's ratios there; and the margin batching should give, read from the
 * round trips per job the proxy counted and from what the hop added to each system's latency.
 */
import { formatNumber, formatRatio, mediansGrid, ratiosGrid, type Grid } from './grid.ts';
import { medianOf, ranSystems, SUBJECT, LIMIT_SYSTEM, systemScenarioById, type Results, type SystemScenarioResult } from './results.ts';
import type { StartupSection } from './startup.ts';

const n3 = (v: number) => formatNumber(v, 3);
const n2 = (v: number) => formatNumber(v, 2);

/** The calibration of the hop, for people. */
export function hopCalibration(results: Results): string {
  const h = results.hop;
  if (!h) return 'The delay proxy was not calibrated in this run.';
  return (
    `A delay proxy on loopback (bench/delay-proxy.ts) in front of PostgreSQL holds every chunk ${formatNumber(h.holdMs * 1000, 0)} µs each way; ` +
    `with its own passage, an idle SELECT 1 took ${n2(h.hopP50Ms)} ms through it against ${n2(h.directP50Ms)} ms straight (median): ` +
    `+${n2(h.hopP50Ms - h.directP50Ms)} ms a round trip, as to a managed database in the same zone.`
  );
}

/**
 * The margin lines: per peer, its round trips per no-op job against spindle's (what batching saves when
 * round trips bound the drain), and what the hop added to each system's enqueue-to-start p50 (the round
 * trips waited for one after another on a job's way to its handler).
 */
function marginLines(results: Results): string[] {
  const noop = systemScenarioById(results, 'noop-hop');
  const latencyHop = systemScenarioById(results, 'latency-hop');
  const latencyLocal = systemScenarioById(results, 'latency');
  const systems = ranSystems(results).filter((s) => s.name !== LIMIT_SYSTEM);
  const lines: string[] = [];
  const ours = noop && medianOf(noop, SUBJECT, 'roundTripsPerJob');
  if (noop && ours !== undefined) {
    const parts = systems
      .filter((s) => s.name !== SUBJECT)
      .map((s) => {
        const theirs = medianOf(noop, s.name, 'roundTripsPerJob');
        return theirs === undefined ? undefined : `${s.title} ${n3(theirs)} (${formatRatio(theirs / ours)})`;
      })
      .filter((p): p is string => p !== undefined);
    lines.push(
      `Round trips per no-op job, counted at the proxy (every connection's client-to-server turns over the run, setup and warm-up included): ` +
        `spindle ${n3(ours)}; ${parts.join(', ')}. ` +
        'Where a drain is bound by round trips, the ratio in brackets is the margin spindle\'s batching should give; ' +
        'a system that keeps more round trips in flight at once (more connections) recovers part of it.',
    );
  }
  if (latencyHop && latencyLocal) {
    const parts = systems
      .map((s) => {
        const there = medianOf(latencyHop, s.name, 'p50Ms');
        const here = medianOf(latencyLocal, s.name, 'p50Ms');
        return there === undefined || here === undefined ? undefined : `${s.title} +${n2(there - here)} ms`;
      })
      .filter((p): p is string => p !== undefined);
    if (parts.length > 0) {
      lines.push(
        `What the hop added to enqueue-to-start p50 (10c against 3, same run): ${parts.join(', ')}. ` +
          'Each millisecond is about one round trip waited for on the way from enqueue to handler (the enqueue\'s INSERT and commit, ' +
          'the NOTIFY\'s way out, the claim): there batching does not help, only fewer round trips in a row.',
      );
    }
  }
  return lines;
}

/** The sections of scenarios 10a-10c: medians, ratios and margin; none when they did not run. */
export function hopSections(results: Results): StartupSection[] {
  const grid: Grid = mediansGrid(results, 'hop');
  if (grid.headers.length <= 1) return [];
  const ratios = ratiosGrid(results, 'hop');
  const sizes = results.scenarios
    .filter((s): s is SystemScenarioResult => s.kind === 'system' && s.network === 'hop')
    .map((s) => `${s.issueNumber}: ${s.size}`);
  const sections: StartupSection[] = [
    {
      title: 'The database one hop away (scenarios 10a-10c; issue 25)',
      before: [hopCalibration(results), `Sizes: ${sizes.join('; ')}.`],
      grid,
      after: marginLines(results),
    },
  ];
  if (ratios) {
    sections.push({
      title: 'spindle against each peer, the database one hop away',
      before: ['Above 1x, spindle is better (more jobs/s, less latency, fewer round trips).'],
      grid: ratios,
      after: [],
    });
  }
  return sections;
}
