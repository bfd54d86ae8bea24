/** The summary printed at the end of a run. */
import { formatNumber, gridToText, mediansGrid, ratiosGrid } from './grid.ts';
import { goals, type Results } from './results.ts';
import { hopSections } from './hop.ts';
import { shortfalls, spindleOnlyText } from './spindle-only.ts';

/** A goal's mark: met, not met, or not measured. */
export function goalMark(met: boolean | undefined): string {
  return met === undefined ? '[ -- ]' : met ? '[ met ]' : '[ NOT met ]';
}

/** Problems worth a line each: failed runs and jobs a system left unfinished. */
export function runProblems(results: Results): string[] {
  const lines: string[] = [];
  for (const scenario of results.scenarios) {
    if (scenario.kind === 'standalone' && scenario.error) lines.push(`${scenario.title}: ${firstLine(scenario.error)}`);
    if (scenario.kind !== 'system') continue;
    for (const [system, outcome] of Object.entries(scenario.systems)) {
      for (const run of outcome.runs) {
        if (!run.ok) lines.push(`${scenario.short}, ${system}, run ${run.run}: ${firstLine(run.error ?? 'failed')}`);
        else if (run.unfinished) lines.push(`${scenario.short}, ${system}, run ${run.run}: ${run.unfinished} jobs left unfinished after stop()`);
      }
    }
  }
  return lines;
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.slice(0, 300);
}

/** Why there are no ratios: spindle did not run, or no peer did. */
export function noRatiosReason(results: Results): string {
  const spindle = results.systems.find((s) => s.name === 'spindle');
  if (!spindle) return 'spindle was not selected';
  if (spindle.skipped) return `spindle was not measured: ${spindle.skipped}`;
  return 'no peer ran alongside spindle';
}

/** The whole end-of-run summary as text. */
export function consoleSummary(results: Results): string {
  const out: string[] = [];
  out.push('', `== Medians of ${results.runs} runs${results.quick ? ' (--quick sizes)' : ''}, PostgreSQL on this machine ==`, gridToText(mediansGrid(results)));
  const ratios = ratiosGrid(results);
  out.push('', '== spindle vs each peer (x > 1: spindle better) ==');
  out.push(ratios ? gridToText(ratios) : noRatiosReason(results));
  for (const section of hopSections(results)) {
    out.push('', `== ${section.title} ==`, ...section.before.slice(0, 1));
    if (section.grid) out.push(gridToText(section.grid));
    out.push(...section.after);
  }

  const claim = results.scenarios.find((s) => s.id === 'claim');
  if (claim?.kind === 'standalone') {
    out.push('', `== ${claim.title} (${claim.issueNumber}, spindle) ==`);
    if (claim.result) {
      const r = claim.result;
      out.push(
        `10,000 queued: ${formatNumber(r.claim10kMs!, 2)} ms   1,000,000 queued: ${formatNumber(r.claim1MMs!, 2)} ms   ratio ${formatNumber(r.ratio!, 2)}x`,
      );
    } else out.push(claim.skipped ? `skipped: ${claim.skipped}` : `failed: ${firstLine(claim.error ?? '')}`);
  }

  out.push(...spindleOnlyText(results));

  out.push('', '== Goals (issue 8 as 25 restates them; 6 and 5 for progress, cancel and timeout; 20 for the time to the first job; 22 for workflows; 23 for flow control; 25 one hop away and sustained) ==');
  for (const g of goals(results)) out.push(`${goalMark(g.met).padEnd(11)} ${g.goal}: ${g.measured}`);

  const short = shortfalls(results);
  if (short.length > 0) out.push('', '== Where spindle falls short ==', ...short.map((line) => `- ${line.replaceAll('**', '')}`));

  const pending = results.scenarios.filter((s) => s.kind === 'pending');
  if (pending.length > 0) {
    out.push('', '== Scenarios not written yet ==');
    for (const p of pending) out.push(`${p.issueNumber}. ${p.title}: waits for ${p.waitingFor}`);
  }

  const problems = runProblems(results);
  if (problems.length > 0) out.push('', '== Problems ==', ...problems);

  out.push(
    '',
    `PostgreSQL ${results.database.version} (${results.database.source}); BullMQ on its PostgreSQL backend, not Redis.`,
    `Took ${Math.round(results.durationSeconds)} s.`,
  );
  return out.join('\n');
}
