/**
 * How soon a supervisor answers a notice of new jobs, in a large fleet: pure rules, no I/O.
 *
 * Every enqueue notifies every supervisor, and each would claim at once: in a fleet of fifty, one job
 * costs fifty claims, forty-nine of them empty, and at fifty enqueues a second the claims alone fill
 * the database's cores. So, among at least FLEET_PACING_FROM live supervisors, one whose last claims
 * on a notice came back empty (others took the jobs first) answers the next notice later: the first
 * delay FIRST_NOTICE_DELAY_MS, doubling to MAX_NOTICE_DELAY_MS, with jitter; notices meanwhile share
 * its one claim. A claim that takes a job brings it back to answering at once. The supervisors that
 * win go on answering first, the others claim a few times a second, and a bulk enqueue, whose claims
 * all find jobs, has every supervisor answering at once again. A smaller fleet answers every notice
 * at once: a few empty claims cost less than the wait.
 */

/** Live supervisors from which notices are paced. */
export const FLEET_PACING_FROM = 8;
/** The delay after one empty claim on a notice; it doubles with each one after. */
export const FIRST_NOTICE_DELAY_MS = 10;
/** The longest delay (before jitter): a job no answering supervisor can take waits about this long. */
export const MAX_NOTICE_DELAY_MS = 200;

export class NoticePacing {
  /** Claims on a notice in a row that found nothing to take, though there was room. */
  #empty = 0;

  /** A claim on a notice had room and took nothing: another supervisor was first. */
  claimedNothing(): void {
    this.#empty += 1;
  }

  /** A claim took jobs: this supervisor answers at once again. */
  claimedSome(): void {
    this.#empty = 0;
  }

  /** How long to wait before claiming on a notice, with `liveSupervisors` in the fleet; 0: at once. */
  delayMs(liveSupervisors: number, random: () => number = Math.random): number {
    if (liveSupervisors < FLEET_PACING_FROM || this.#empty === 0) return 0;
    const delay = Math.min(MAX_NOTICE_DELAY_MS, FIRST_NOTICE_DELAY_MS * 2 ** (this.#empty - 1));
    // Jitter, so the supervisors that wait do not all claim at the same moment.
    return Math.max(1, Math.round(delay * (0.5 + random())));
  }
}
