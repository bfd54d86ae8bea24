/** Text rendering for the CLI: tables, bars, durations. */
import type { Job } from '../job.ts';

/** A plain aligned table; `null`/`undefined` cells print as '-'. */
export function table(headers: string[], rows: unknown[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}

/** `[#######.........]  42%` */
export function bar(percent: number | null | undefined, width = 24): string {
  const p = Math.max(0, Math.min(100, percent ?? 0));
  const filled = Math.round((p / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.toFixed(0).padStart(3)}%`;
}

/** 1.2s, 340ms, 3m05s */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m${String(Math.round((ms % 60_000) / 1_000)).padStart(2, '0')}s`;
}

/** A short rendering of a JSON value for a table cell. */
export function brief(value: unknown, max = 40): string {
  if (value === null || value === undefined) return '-';
  const text = JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/** The time a job ran or has been running. */
export function jobElapsed(job: Job, now = Date.now()): number | null {
  if (!job.startedAt) return null;
  return (job.finishedAt?.getTime() ?? now) - job.startedAt.getTime();
}

/** The jobs table of `spindle jobs`. */
export function jobsTable(jobs: Job[]): string {
  return table(
    ['ID', 'TYPE', 'QUEUE', 'STATE', 'ATTEMPT', 'PROGRESS', 'TIME', 'CREATED', 'ERROR / OUTPUT'],
    jobs.map((j) => [
      j.id,
      j.type,
      j.queue,
      j.state,
      `${j.attempt}/${j.maxAttempts ?? '-'}`,
      j.progress === null ? '-' : `${Math.round(j.progress)}%`,
      duration(jobElapsed(j)),
      j.createdAt.toISOString().replace('T', ' ').slice(0, 19),
      j.error ? brief(j.error.message, 50) : brief(j.output, 50),
    ]),
  );
}
