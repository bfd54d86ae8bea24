/** How the benchmark sees spindle's jobs finish: its NOTIFY, with a poll of the table as a backstop. */
import type pg from 'pg';
import type { FinishCounter } from './finish-counter.ts';
import { queryNumber } from './postgres.ts';

/** How often the table is read, in case a notification was missed. */
const POLL_FINISHED_MS = 250;

/**
 * Counts finished jobs into `finished`, from LISTEN spindle_finished on `listener` and a periodic
 * count of the table. Returns a function that stops the poll (the listener stays the caller's).
 */
export async function followFinished(listener: pg.Client, finished: FinishCounter): Promise<() => void> {
  // Two absolute counts, merged by max: a count read from the table may already hold jobs whose
  // notifications are still on their way, so adding those on top of it would count them twice
  // (and end a drain early).
  let notified = 0;
  let polled = 0;
  listener.on('notification', (message) => {
    if (message.channel !== 'spindle_finished' || !message.payload) return;
    notified += message.payload.split(',').length;
    finished.raiseTo(Math.max(notified, polled));
  });
  await listener.query('LISTEN spindle_finished');
  const poll = setInterval(() => {
    queryNumber(listener, `SELECT count(*) AS n FROM spindle.jobs WHERE state IN ('succeeded', 'failed')`).then(
      (n) => {
        polled = n;
        finished.raiseTo(Math.max(notified, polled));
      },
      () => {},
    );
  }, POLL_FINISHED_MS);
  return () => clearInterval(poll);
}
