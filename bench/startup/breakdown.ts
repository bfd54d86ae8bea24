/**
 * Where the time to the first job goes, read from a traced run of scenario 7 (see trace.mjs): each
 * phase as a span in ms from the moment startSupervisor() was called (a library run) or the
 * process was spawned (a CLI run). Pure functions of what the children reported; the phases follow
 * src/start.ts and src/actors/supervisor.ts (named in each label).
 */
import type { CliTrace, JobStamps, QueryEvent, SpindleChildAnswer, ThreadEvent } from './protocol.ts';

/** A phase's start and end, ms from the run's zero. */
export interface Span {
  start: number;
  end: number;
}

/** One phase of the breakdown. */
export interface Phase {
  id: string;
  label: string;
  /** Work beside the first job's way, never awaited by it directly (the listener, the elector). */
  beside?: boolean;
}

/**
 * The phases of startSupervisor() up to the first job written, each found by its own events, so
 * the breakdown holds whatever order src/start.ts runs them in (one after another, or side by side:
 * the timeline shows which). Between two phases is work no traced event marks: JavaScript on the
 * main thread, or a wait for a core.
 */
export const LIBRARY_PHASES: readonly Phase[] = [
  { id: 'setup', label: "the call to the supervisor's first database connection (options, logger, debug-socket check, the first pool thread created)" },
  { id: 'poolConnect', label: "the supervisor's pools: 5 connections opened side by side (new server backends)" },
  { id: 'migrateQueries', label: 'migrate() on one of them: advisory lock, CREATE ... IF NOT EXISTS, read applied, unlock (4 round trips)' },
  { id: 'warm', label: 'the first claim and outcome statements run for no rows, one on each connection, side by side (planned ahead)' },
  { id: 'threads', label: "the first pool thread, started alone: created to ready (thread-entry.cjs ran; thread.js loads after, unseen)" },
  { id: 'scan', label: "loadRegistry(): read the workers directory, to the probe task on that thread (its 'spindle:probing')" },
  { id: 'probeModule', label: "pool thread: the probe imports the worker module ('spindle:probing' to its top level ran)" },
  { id: 'register', label: 'supervisor.start(): INSERT its supervisors row beside its module limits, then the limited scopes; its actors start (to the first claim)' },
  { id: 'claim', label: 'first claim statement (the supervisor\'s first message, once its actors have started)' },
  { id: 'moduleLoad', label: "job thread: to the worker module's import, when that thread had not loaded it (claim answered to its top level ran)" },
  { id: 'dispatch', label: 'to the handler on the job thread (claim answered to the handler called)' },
  { id: 'handler', label: 'the handler' },
  { id: 'outcome', label: 'outcome back to the main thread (job:finished, when seen)' },
  { id: 'write', label: 'completer: batch, finish statement, its NOTIFY at a listening client' },
  { id: 'listener', label: 'listener actor: connect, LISTEN x4', beside: true },
  { id: 'elector', label: "elector actor: connect, advisory lock (then, as leader, the reaper's and scheduler's sweeps)", beside: true },
  { id: 'debugSocket', label: 'debug server: its directories and socket checks, to listen() on its Unix socket (the claim waits for it)' },
  { id: 'otherThreads', label: 'the other pool threads: created (once startSupervisor() has started the supervisor) to ready', beside: true },
];

/** Marks on the same axis: the import before the call, the moments a user sees. */
export interface LibraryMarks {
  importStart: number;
  importEnd: number;
  /** startSupervisor() resolved. */
  returned: number;
  /** job:finished on the main thread, when seen. */
  handled?: number;
  /** The `spindle_finished` NOTIFY arrived. */
  written: number;
  /**
   * Statements of the supervisor's main pool, other than its registration, sent before the first
   * claim was answered: the new leader's reaper and scheduler sweeps, which share the server and
   * the main thread with the claim.
   */
  sweepsBeforeClaim?: number;
  /** The pool's threads started from the call to the job written. */
  jobThreads?: number;
  /** The worker module's top level ran in the job's thread before its job reached it (the probe imported it there). */
  moduleLoadedAhead?: number;
}

/** The phases of one traced library run, ms from the call; a phase whose events are missing is left out. */
export function libraryBreakdown(
  answer: Extract<SpindleChildAnswer, { ok: true }>,
  stamps: JobStamps | undefined,
  workersDir: string,
): { phases: Record<string, Span>; marks: LibraryMarks } {
  const zero = answer.callAt;
  const at = (t: number | undefined) => (t === undefined ? undefined : t - zero);
  const phases: Record<string, Span> = {};
  const put = (id: string, start: number | undefined, end: number | undefined) => {
    const s = at(start);
    const e = at(end);
    if (s !== undefined && e !== undefined) phases[id] = { start: s, end: e };
  };
  const marks: LibraryMarks = {
    importStart: answer.importStart - zero,
    importEnd: answer.importEnd - zero,
    returned: answer.returnedAt - zero,
    written: answer.notifiedAt - zero,
  };
  if (answer.handledAt !== undefined) marks.handled = answer.handledAt - zero;
  const trace = answer.trace;
  if (!trace) return { phases, marks };

  const after = <T extends { start: number }>(list: T[], t: number) => list.filter((e) => e.start >= t);
  const firstQuery = (from: number, test: (q: QueryEvent) => boolean) => after(trace.queries, from).find(test);

  const supervisorApp = (app: string | undefined) => app?.startsWith('spindle:supervisor:') === true;
  // The supervisor's pools open their connections side by side; one of them migrates, then each runs
  // the statement it will run first for no rows, all before the registration.
  const register = firstQuery(zero, (q) => /INSERT INTO spindle\.supervisors/i.test(q.sql));
  const poolConnects = after(trace.connects, zero).filter((c) => supervisorApp(c.app) && (register === undefined || c.start < register.start));
  const lock = firstQuery(zero, (q) => /pg_advisory_lock\(hashtext\('spindle\.migrate/.test(q.sql));
  const unlock = lock && firstQuery(lock.start, (q) => /pg_advisory_unlock\(hashtext\('spindle\.migrate/.test(q.sql));
  const warm = unlock?.end === undefined || register === undefined
    ? []
    : after(trace.queries, unlock.end).filter((q) => q.start < register.start && (q.name === 'spindle.claim' || q.name === 'spindle.finish'));
  put('setup', zero, poolConnects[0]?.start);
  if (poolConnects.length > 0 && poolConnects.every((c) => c.end !== undefined)) {
    put('poolConnect', poolConnects[0]!.start, Math.max(...poolConnects.map((c) => c.end!)));
  }
  put('migrateQueries', lock?.start, unlock?.end);
  if (warm.length > 0 && warm.every((q) => q.end !== undefined)) put('warm', warm[0]!.start, Math.max(...warm.map((q) => q.end!)));

  // The pool's threads: each says 'spindle:port' first (thread-entry.cjs); the first one runs the probe.
  const jobThreads = trace.threads.filter((t) => t.created >= zero).sort((x, y) => x.created - y.created);
  marks.jobThreads = jobThreads.length;
  const [first, ...others] = jobThreads;
  if (first !== undefined) put('threads', first.created, messageAt(first, 'spindle:port') ?? first.online);
  const othersReady = others.map((t) => messageAt(t, 'spindle:port') ?? t.online);
  if (others.length > 0 && othersReady.every((r) => r !== undefined)) {
    put('otherThreads', Math.min(...others.map((t) => t.created)), Math.max(...(othersReady as number[])));
  }
  const probing = jobThreads.map((t) => messageAt(t, 'spindle:probing')).find((at) => at !== undefined);
  const scan = after(trace.fs, zero).find((f) => f.call === 'readdir' && f.path === workersDir);
  put('scan', scan?.start, probing);

  // The first claim is the first one after the registration (those before it were run for no rows).
  const claim = register && firstQuery(register.start, (q) => q.name === 'spindle.claim');
  put('register', register?.start, claim?.start);
  const actorConnect = (prefix: string) => after(trace.connects, zero).find((c) => c.app?.startsWith(prefix) === true);
  const listenerConnect = actorConnect('spindle:listener:');
  const listens = listenerConnect ? after(trace.queries, listenerConnect.start).filter((q) => q.app === listenerConnect.app && /^LISTEN/i.test(q.sql)) : [];
  put('listener', listenerConnect?.start, listens.at(-1)?.end);
  const electorConnect = actorConnect('spindle:elector:');
  const lockTry = electorConnect && firstQuery(electorConnect.start, (q) => q.app === electorConnect.app);
  put('elector', electorConnect?.start, lockTry?.end);
  const debugServer = after(trace.servers, zero).find((s) => s.start >= (register?.end ?? zero));
  const stateDirCall = register?.end === undefined ? undefined : after(trace.fs, register.end).find((f) => f.call === 'mkdir');
  put('debugSocket', stateDirCall?.start, debugServer?.listening);
  if (claim?.end !== undefined) {
    marks.sweepsBeforeClaim = trace.queries.filter(
      (q) => supervisorApp(q.app) && !q.fast && q.start >= (register?.end ?? zero) && q.start < claim.end!,
    ).length;
  }
  put('claim', claim?.start, claim?.end);
  // The job ran on the thread that probed: the module's top level ran before its claim was answered.
  if (probing !== undefined && stamps !== undefined && claim?.end !== undefined && stamps.loadedAt < claim.end) {
    put('probeModule', probing, stamps.loadedAt);
  }
  // No import for the job can begin before its claim: a top level that ran earlier was the probe's.
  // The supervisor's events are listened to once startSupervisor() returns; without them, the thread's own stamps.
  const handlerCalled = answer.startedAt ?? stamps?.handlerStart;
  const loadedAhead = stamps !== undefined && claim?.end !== undefined && stamps.loadedAt < claim.end;
  if (loadedAhead) {
    marks.moduleLoadedAhead = stamps.loadedAt - zero;
    put('dispatch', claim?.end, handlerCalled);
  } else {
    put('moduleLoad', claim?.end, stamps?.loadedAt);
    put('dispatch', stamps?.loadedAt, handlerCalled);
  }
  put('handler', stamps?.handlerStart, stamps?.handlerEnd);
  put('outcome', stamps?.handlerEnd, answer.handledAt);
  put('write', answer.handledAt ?? stamps?.handlerEnd, answer.notifiedAt);
  return { phases, marks };
}

function messageAt(thread: ThreadEvent, type: string): number | undefined {
  return thread.messages.find((m) => m.type === type)?.at;
}

/**
 * The phases of `spindle start`, ms from the spawn: what the CLI adds before startSupervisor()
 * begins its work, then the library's way in coarse steps (broken down by the library runs).
 */
export const CLI_PHASES: readonly Phase[] = [
  { id: 'nodeStart', label: 'node starts (spawn to the first line of JavaScript)' },
  { id: 'cliImport', label: "import of the CLI and the package, the flags, startSupervisor()'s setup (to its first PostgreSQL connection or thread)" },
  { id: 'toHandler', label: "from there to the job's handler start (migrate check, probe, pool, supervisor.start(), claim, job thread, module import)" },
  { id: 'jobDone', label: 'handler start to the NOTIFY at the parent (handler, outcome, finish statement, NOTIFY)' },
];

/** The phases of one traced CLI run, ms from the spawn. */
export function cliBreakdown(
  spawnAt: number,
  notifiedAt: number,
  cli: CliTrace,
  stamps: JobStamps | undefined,
  postgresPort: string,
): Record<string, Span> {
  const phases: Record<string, Span> = {};
  const put = (id: string, start: number | undefined, end: number | undefined) => {
    if (start !== undefined && end !== undefined) phases[id] = { start: start - spawnAt, end: end - spawnAt };
  };
  const firstDb = cli.trace.sockets.find((s) => s.target === postgresPort)?.start;
  const firstThread = cli.trace.threads[0]?.created;
  const begun = firstDb === undefined ? firstThread : firstThread === undefined ? firstDb : Math.min(firstDb, firstThread);
  put('nodeStart', spawnAt, cli.preloadAt);
  put('cliImport', cli.preloadAt, begun);
  put('toHandler', begun, stamps?.handlerStart);
  put('jobDone', stamps?.handlerStart, notifiedAt);
  return phases;
}
