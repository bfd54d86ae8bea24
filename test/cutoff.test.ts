/**
 * A host cut off from the network: a supervisor reaches PostgreSQL through a TCP forwarder of our
 * own, and mid-run it is cut off, its connections hanging with no reset, as when a host drops off
 * the network: in a network namespace, by bringing its veth link down (needs root and iproute2's
 * `ip netns`; skipped without them), and, anywhere, by the forwarder going silent. Its jobs must be
 * taken back and rerun elsewhere, it must stop their threads by itself within about a lease, its
 * late outcomes must be refused by the fencing, and once it is back it must rejoin and work. The
 * database and the handlers' side-effect ledger are the truth.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import type { SupervisorOptions } from '../src/config.ts';
import type { Job } from '../src/job.ts';
import type { FlowLine, HeldFlowInput } from './fixtures/cutoff-workflows/held-flow.ts';
import type { HoldInput, LedgerLine } from './fixtures/cutoff-workers/hold.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { NetworkNamespace, netnsUnavailable } from './helpers/netns.ts';
import { eventually } from './helpers/processes.ts';
import { SupervisorProcess } from './helpers/supervisor-process.ts';
import { TcpForwarder } from './helpers/tcp-forwarder.ts';

const WORKERS = fileURLToPath(new URL('./fixtures/cutoff-workers', import.meta.url));
const WORKFLOWS = fileURLToPath(new URL('./fixtures/cutoff-workflows', import.meta.url));
/** SPINDLE_CUTOFF_DEFAULTS=1: the supervisors' default lease, heartbeat, reaper and grace, for BENCHMARKS.md's figures (a minute). */
const DEFAULTS = process.env.SPINDLE_CUTOFF_DEFAULTS === '1';
const HEARTBEAT_MS = DEFAULTS ? 5_000 : 250;
const LEASE_MS = DEFAULTS ? 15_000 : 2_000;
const REAPER_INTERVAL_MS = DEFAULTS ? 2_000 : 200;
const ABORT_GRACE_MS = DEFAULTS ? 1_000 : 300;
const BOOT_TIMEOUT_MS = 20_000;

/** A way to cut the supervisor off, and the URL and command prefix it runs with. */
interface Cut {
  url: string;
  launcher: string[];
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** How it is cut off, and whether it leads when it is (then the other supervisor must take the lead to reap). */
interface Way {
  name: string;
  unavailable: string | null;
  make: (databaseUrl: string) => Promise<Cut>;
  cutOffLeads: boolean;
}

const WAYS: Way[] = [
  { name: 'its link brought down (a network namespace)', unavailable: netnsUnavailable(), make: linkDown, cutOffLeads: false },
  { name: 'its proxy gone silent, while it leads', unavailable: null, make: silentProxy, cutOffLeads: true },
];

/** A supervisor in a network namespace, through a forwarder on the veth's host end; the cut brings the link down. */
async function linkDown(databaseUrl: string): Promise<Cut> {
  const ns = NetworkNamespace.create();
  try {
    const forwarder = await TcpForwarder.start(ns.hostAddress, targetOf(databaseUrl));
    return {
      url: through(databaseUrl, ns.hostAddress, forwarder.port),
      launcher: ns.launcher,
      cut: () => ns.cut(),
      restore: () => ns.restore(),
      close: async () => {
        ns.remove();
        await forwarder.close();
      },
    };
  } catch (err) {
    ns.remove();
    throw err;
  }
}

/** A supervisor on this host, through a forwarder that stops forwarding. */
async function silentProxy(databaseUrl: string): Promise<Cut> {
  const forwarder = await TcpForwarder.start('127.0.0.1', targetOf(databaseUrl));
  return {
    url: through(databaseUrl, '127.0.0.1', forwarder.port),
    launcher: [],
    cut: () => forwarder.freeze(),
    restore: () => forwarder.thaw(),
    close: () => forwarder.close(),
  };
}

function targetOf(databaseUrl: string): { host: string; port: number } {
  const url = new URL(databaseUrl);
  return { host: url.hostname, port: Number(url.port || 5432) };
}

/** The database's URL through a forwarder at host:port. */
function through(databaseUrl: string, host: string, port: number): string {
  const url = new URL(databaseUrl);
  url.hostname = host;
  url.port = String(port);
  return url.toString();
}

function supervisorOptions(databaseUrl: string, extra: SupervisorOptions): SupervisorOptions {
  return {
    databaseUrl,
    workers: WORKERS,
    workflows: WORKFLOWS,
    prefetch: 0,
    heartbeatMs: HEARTBEAT_MS,
    leaseMs: LEASE_MS,
    reaperIntervalMs: REAPER_INTERVAL_MS,
    abortGraceMs: ABORT_GRACE_MS,
    ...(DEFAULTS ? {} : { pollMs: 1_000, backoff: { baseMs: 20, maxMs: 100 } }),
    shutdownTimeoutMs: 2_000,
    logLevel: 'info',
    socket: false,
    ...extra,
  };
}

for (const way of WAYS) {
  if (way.unavailable) console.warn(`[cutoff] skipped, a supervisor cut off by ${way.name}: ${way.unavailable}`);
  describe.skipIf(way.unavailable !== null)(`a supervisor cut off from the database by ${way.name}`, () => cutOffSuite(way));
}

function cutOffSuite(way: Way): void {
  let cut: Cut | undefined;
  let db: TestDatabase;
  let client: Client;
  let dir: string;
  const processes: SupervisorProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spindle-cutoff-'));
    db = await createTestDatabase();
    client = createClient({ connectionString: db.url });
    cut = await way.make(db.url);
  });

  afterAll(async () => {
    // Even when the test failed: no supervisor, namespace, link or forwarder outlives it.
    for (const p of processes) {
      p.signal('SIGKILL');
      await p.exited;
    }
    await cut?.close();
    await client?.close();
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function startSupervisor(databaseUrl: string, extra: SupervisorOptions, launcher: string[] = []): Promise<SupervisorProcess> {
    const p = new SupervisorProcess(supervisorOptions(databaseUrl, extra), {}, launcher);
    processes.push(p);
    return p.ready(BOOT_TIMEOUT_MS);
  }

  const ledgerFile = () => join(dir, 'ledger.jsonl');
  const ledger = (): LedgerLine[] =>
    existsSync(ledgerFile())
      ? readFileSync(ledgerFile(), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LedgerLine)
      : [];

  const flowLedgerFile = () => join(dir, 'flow-ledger.jsonl');
  const flowLedger = (): FlowLine[] =>
    existsSync(flowLedgerFile())
      ? readFileSync(flowLedgerFile(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as FlowLine)
      : [];

  function hold(tag: string, releaseFile: string, extra: Partial<HoldInput> = {}): HoldInput {
    return { ledger: ledgerFile(), tag, releaseFile: join(dir, releaseFile), laterMs: 100, ...extra };
  }

  const started = (p: SupervisorProcess, job: Job, attempt: number) =>
    p.waitFor((l) => l.event === 'job:started' && l.id === job.id && l.attempt === attempt, LEASE_MS + 10_000, `job ${job.id} attempt ${attempt} started`);

  it('has its jobs rerun elsewhere, stops their threads itself, has its late outcomes refused, and rejoins', async () => {
    // The jobs must go to the supervisor to be cut off. A leader on the host has both its threads held
    // by blockers meanwhile; a cut-off leader starts alone and takes them before the other starts.
    const startHost = () => startSupervisor(db.url, { concurrency: 2, queues: ['default'] });
    const startCutOff = () => startSupervisor(cut!.url, { concurrency: 3, queues: ['default', 'rejoin'] }, cut!.launcher);
    const enqueueHeld = async () =>
      (await client.enqueueMany([
        { type: 'hold', input: hold('cooperative', 'never') },
        { type: 'hold', input: hold('stubborn', 'never', { stubborn: true }) },
        { type: 'hold', input: hold('finisher', 'release-finisher') },
      ])) as [Job, Job, Job];
    let host: SupervisorProcess;
    let cutOff: SupervisorProcess;
    let blockers: Job[] = [];
    let held: [Job, Job, Job];
    // A workflow run the cut-off supervisor resumes (it is alone when the run starts), its step retried
    // across the cut: where the host starts first, it would take the run.
    let flowRun: string | undefined;
    if (way.cutOffLeads) {
      cutOff = await startCutOff();
      await cutOff.waitFor((l) => l.event === 'leader:changed' && l.leader === true, 5_000, 'leadership');
      const input: HeldFlowInput = { ledger: flowLedgerFile(), releaseFile: join(dir, 'release-flow') };
      flowRun = (await client.startWorkflow('held-flow', input)).run.id;
      expect(await eventually(() => flowLedger().some((l) => l.step === 'attempt' && l.pid === cutOff.pid), 10_000)).toBe(true);
      held = await enqueueHeld();
      for (const job of held) await started(cutOff, job, 1);
      host = await startHost();
    } else {
      host = await startHost();
      await host.waitFor((l) => l.event === 'leader:changed' && l.leader === true, 5_000, 'leadership');
      blockers = await client.enqueueMany([0, 1].map((i) => ({ type: 'hold', input: hold(`blocker${i}`, 'release-blockers') })));
      for (const job of blockers) await started(host, job, 1);
      cutOff = await startCutOff();
      held = await enqueueHeld();
      for (const job of held) await started(cutOff, job, 1);
    }
    const [cooperative, stubborn, finisher] = held;

    cut!.cut();
    const cutAt = Date.now();
    const afterCut = cutOff.lines.length;
    // The finisher's first attempt ends while the link is down: its outcome cannot reach the database.
    writeFileSync(join(dir, 'release-finisher'), '');
    expect(await eventually(() => ledger().some((l) => l.tag === 'finisher' && l.attempt === 1 && l.edge === 'end'), 5_000)).toBe(true);
    writeFileSync(join(dir, 'release-blockers'), '');

    // It notices by itself, with no word from the database, that its leases have ended, and stops the threads.
    const stopped = (job: Job) =>
      cutOff.waitFor(
        (l) => l.event === 'job:finished' && l.id === job.id && l.attempt === 1 && l.outcome === 'lost',
        LEASE_MS + 5_000,
        `job ${job.id} (attempt 1) stopped on the cut-off supervisor`,
        afterCut,
      );
    const [cooperativeStopped, stubbornStopped] = await Promise.all([stopped(cooperative), stopped(stubborn)]);

    // The other supervisor (leading, or taking the lead from the cut-off one) takes the three jobs back
    // and runs them again, while the link is still down.
    const reruns = await Promise.all([cooperative, stubborn, finisher].map((job) => started(host, job, 2)));
    const rerun = await Promise.all([cooperative, stubborn, finisher].map((j) => client.waitFor(j.id, { timeoutMs: 10_000 })));
    for (const job of rerun) expect([job.state, job.attempt, job.supervisorId, job.output]).toEqual(['succeeded', 2, host.id, { attempt: 2, pid: host.pid }]);
    const reaped = host.all((l) => l.event === 'job:reaped' && l.supervisorId === cutOff.id);
    const tookLead = host.lines.find((l) => l.event === 'leader:changed' && l.leader === true);
    // The workflow run: taken over by the host (its step retried there), released, ended there.
    if (flowRun) {
      expect(await eventually(() => flowLedger().some((l) => l.step === 'attempt' && l.pid === host.pid), LEASE_MS + 10_000)).toBe(true);
      writeFileSync(join(dir, 'release-flow'), '');
      expect((await client.waitForWorkflow(flowRun, { timeoutMs: 20_000 })).state).toBe('succeeded');
    }

    cut!.restore();
    const restoredAt = Date.now();
    // Its late outcome (the finisher's first attempt) is refused by the fencing.
    const refused = await cutOff.waitFor(
      (l) => l.event === 'claim:lost' && l.id === finisher.id && l.attempt === 1,
      30_000,
      'the late outcome refused',
      afterCut,
    );
    expect(refused.reason).toMatch(/fenced write matched nothing/);

    // It rejoins: it claims and finishes new work (a queue only it serves).
    const rejoinEnqueuedAt = Date.now();
    const rejoinJobs = await client.enqueueMany(
      [0, 1].map((i) => ({ type: 'hold', input: hold(`rejoin${i}`, 'release-blockers'), options: { queue: 'rejoin' } })),
    );
    const rejoined = await Promise.all(rejoinJobs.map((j) => client.waitFor(j.id, { timeoutMs: 20_000 })));
    for (const job of rejoined) expect([job.state, job.attempt, job.supervisorId]).toEqual(['succeeded', 1, cutOff.id]);
    const rejoinedAt = Math.max(...cutOff.all((l) => l.event === 'job:claimed' && rejoinJobs.some((j) => j.id === l.id)).map((l) => l.receivedAt));

    // The database: every job once in `succeeded`, every attempt recorded once, the cut-off one `lost`.
    const all = [...blockers, cooperative, stubborn, finisher, ...rejoinJobs];
    const { rows: attempts } = await db.pool.query<{ job_id: string; attempt: number; outcome: string; worker_id: string }>(
      `SELECT job_id::text, attempt, outcome, worker_id FROM spindle.attempts WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, attempt`,
      [all.map((j) => j.id)],
    );
    const attemptsOf = (job: Job) => attempts.filter((a) => a.job_id === job.id).map((a) => [a.attempt, a.outcome, a.worker_id]);
    for (const job of [cooperative, stubborn, finisher]) {
      expect(attemptsOf(job)).toEqual([
        [1, 'lost', cutOff.id],
        [2, 'succeeded', host.id],
      ]);
    }
    for (const job of blockers) expect(attemptsOf(job)).toEqual([[1, 'succeeded', host.id]]);
    for (const job of rejoinJobs) expect(attemptsOf(job)).toEqual([[1, 'succeeded', cutOff.id]]);
    const { rows } = await db.pool.query<{ state: string; n: number }>(
      `SELECT state, count(*)::int AS n FROM spindle.jobs GROUP BY state`,
    );
    expect(rows).toEqual([{ state: 'succeeded', n: all.length }]);

    // The ledger: each attempt started once; the cut-off attempts were stopped on the cut-off host
    // (the cooperative one at its signal, the stubborn one by terminating its thread): no tick of
    // theirs came after it said they had ended; the finisher's did end, though its outcome was refused.
    const lines = ledger();
    const starts = lines.filter((l) => l.edge === 'start').map((l) => `${l.job}/${l.attempt}`);
    expect(starts.length).toBe(new Set(starts).size);
    const firstAttempt = (job: Job) => lines.filter((l) => l.job === job.id && l.attempt === 1);
    expect(firstAttempt(cooperative).filter((l) => l.edge === 'aborted').map((l) => [l.pid, l.reason])).toEqual([
      [cutOff.pid, expect.stringMatching(/lease/)],
    ]);
    for (const [job, stop] of [
      [cooperative, cooperativeStopped],
      [stubborn, stubbornStopped],
    ] as const) {
      expect(firstAttempt(job).some((l) => l.edge === 'end')).toBe(false);
      const lastTick = Math.max(...firstAttempt(job).map((l) => l.at));
      expect(lastTick).toBeLessThanOrEqual(stop.receivedAt);
    }
    expect(firstAttempt(finisher).filter((l) => l.edge === 'end').map((l) => l.pid)).toEqual([cutOff.pid]);

    if (flowRun) {
      // The run's body stopped on the cut-off supervisor when its leases ended: no attempt of its
      // step there after that (they need no write in between, so only that can stop them), and its
      // last step ran once, on the host. Its steps are recorded once each.
      const lapsedAt = cutOff.lines.find((l, i) => i >= afterCut && typeof l.msg === 'string' && l.msg.startsWith('no heartbeat has reached'))!.receivedAt;
      const cutOffAttempts = flowLedger().filter((l) => l.step === 'attempt' && l.pid === cutOff.pid);
      expect(cutOffAttempts.length).toBeGreaterThan(0);
      expect(Math.max(...cutOffAttempts.map((l) => l.at))).toBeLessThanOrEqual(lapsedAt);
      expect(flowLedger().filter((l) => l.step === 'after').map((l) => l.pid)).toEqual([host.pid]);
      expect(cutOff.lines.some((l) => l.msg === 'no heartbeat reached the database for a lease: these workflow runs stop at their next call' && (l.runs as string[]).includes(flowRun))).toBe(true);
      const run = await client.getWorkflow(flowRun);
      expect(run!.steps.map((step) => [step.name, step.state])).toEqual([
        ['first', 'succeeded'],
        ['retried', 'succeeded'],
        ['after', 'succeeded'],
      ]);
    }

    // It counted what it lost, and that its leases ended once; it is registered and alive again.
    const snapshot = (await cutOff.snapshot()) as { actors: { state: { lostClaims: number }; children: { name: string; state: unknown }[] } };
    expect(snapshot.actors.state.lostClaims).toBe(3);
    expect(snapshot.actors.children.find((c) => c.name === 'heartbeat')?.state).toMatchObject({ leasesEnded: 1 });
    expect((await client.supervisors()).find((s) => s.id === cutOff.id)?.live).toBe(true);
    // One leader: the host (a cut-off leader gave the lead up, and the host took it).
    expect(host.all((l) => l.event === 'leader:changed').map((l) => l.leader)).toEqual([true]);
    expect(cutOff.all((l) => l.event === 'leader:changed').map((l) => l.leader)).toEqual(way.cutOffLeads ? [true, false] : []);

    // The figures of BENCHMARKS.md ("A host cut off"): handlers' times from the ledger, the rest as the lines arrived.
    const backOnline = cutOff.lines.find((l, i) => i >= afterCut && l.msg === 'heartbeat reaches the database again');
    const lapsed = cutOff.lines.find((l, i) => i >= afterCut && typeof l.msg === 'string' && l.msg.startsWith('no heartbeat has reached'));
    const since = (at: number | undefined, from: number) => (at === undefined ? 'n/a' : `${at - from} ms`);
    const cooperativeAborted = firstAttempt(cooperative).find((l) => l.edge === 'aborted')?.at;
    const stubbornLastTick = Math.max(...firstAttempt(stubborn).map((l) => l.at));
    console.log(
      `[cutoff] ${way.name}: lease ${LEASE_MS} ms, heartbeat ${HEARTBEAT_MS} ms, reaper ${REAPER_INTERVAL_MS} ms, grace ${ABORT_GRACE_MS} ms. ` +
        `After the cut: leases given up ${since(lapsed?.receivedAt, cutAt)} (${String(lapsed?.silentMs)} ms after its last beat); ` +
        `threads stopped ${since(cooperativeAborted, cutAt)} (at the signal) and ${since(stubbornLastTick, cutAt)} (last tick before ` +
        `its thread was terminated); jobs reaped ${reaped.map((l) => since(l.receivedAt, cutAt)).join(', ')}; reruns started ` +
        `${reruns.map((l) => since(l.receivedAt, cutAt)).join(', ')}${way.cutOffLeads ? `; the host took the lead ${since(tookLead?.receivedAt, cutAt)}` : ''}. After the link came back: first beat ` +
        `${since(backOnline?.receivedAt, restoredAt)}, late outcome refused ${since(refused.receivedAt, restoredAt)}; ` +
        `new jobs claimed ${since(rejoinedAt, rejoinEnqueuedAt)} after their enqueue`,
    );
  }, DEFAULTS ? 180_000 : 60_000);
}
