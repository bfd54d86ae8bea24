/** When a supervisor counts as dead: the one rule for the reaper, the elector, the Client and the CLI. */

/** A supervisor unseen for this many of its heartbeat intervals is dead (its jobs come back as their leases end). */
export const DEAD_AFTER_HEARTBEATS = 3;
