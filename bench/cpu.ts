/**
 * CPU time spent while a system drains its jobs, so a throughput figure comes with what each job
 * cost: in the benchmark's process (every thread of it: the main thread, job threads, V8's garbage
 * collector helpers) and in the PostgreSQL server (the postmaster and every process it started:
 * backends, autovacuum, the WAL writer, and those that exited meanwhile). Both share the same cores,
 * so together they bound the jobs per second a machine can reach.
 *
 * The server's share is read from /proc: on Linux, for a server on this machine. Elsewhere it is
 * left out. Figures include whatever else the server did meanwhile (another database's autovacuum).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { withConnection } from './systems/postgres.ts';

/** Linux reports process times in clock ticks of 1/100 s (USER_HZ, fixed in its ABI). */
const TICKS_PER_SECOND = 100;

/** CPU used so far, in microseconds. */
export interface CpuReading {
  process: number;
  /** Undefined when the server's processes cannot be read. */
  postgres: number | undefined;
}

/** Reads this process's CPU time and, when it can, its PostgreSQL server's. */
export class CpuMeter {
  private constructor(private readonly postmasterPid: number | undefined) {}

  /** Finds the server of `databaseUrl` among this machine's processes (by a connection's backend pid); none without one. */
  static async open(databaseUrl: string | undefined): Promise<CpuMeter> {
    if (databaseUrl === undefined) return new CpuMeter(undefined);
    // Read while the connection is open: its backend exits with it.
    const postmaster = await withConnection(databaseUrl, async (client) => {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const backend = rows[0]!.pid;
      const stat = readStat(backend);
      // A remote server's backend pid means nothing here, or names an unrelated process: both must be postgres.
      return stat !== undefined && isPostgres(backend) && isPostgres(stat.ppid) ? stat.ppid : undefined;
    });
    return new CpuMeter(postmaster);
  }

  read(): CpuReading {
    const usage = process.cpuUsage();
    return { process: usage.user + usage.system, postgres: this.serverMicros() };
  }

  private serverMicros(): number | undefined {
    const root = this.postmasterPid;
    if (root === undefined) return undefined;
    const postmaster = readStat(root);
    if (postmaster === undefined) return undefined;
    // Exited children are in the postmaster's cutime/cstime, live ones in their own stat.
    let ticks = postmaster.ticks + postmaster.childTicks;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = readStat(Number(entry));
      if (stat?.ppid === root) ticks += stat.ticks;
    }
    return (ticks * 1e6) / TICKS_PER_SECOND;
  }
}

/** CPU time of this process's threads in three groups, µs (Linux: /proc/self/task/<tid>/schedstat). */
export interface ThreadSplit {
  /** The main thread: the event loop and what runs on it, its share of garbage collection included. */
  main: number;
  /** Threads the process had before the system under test started: V8's platform workers (parallel and concurrent GC, compilation), libuv's pool. */
  helpers: number;
  /** Threads started since: job threads (Piscina's, a sandbox's), libuv's pool if it woke. */
  started: number;
}

let threadsAtStart: Set<number> | undefined;

/** Remembers which threads exist now; call before the system under test starts any (bench/child.ts). */
export function markThreadsAtStart(): void {
  const tids = listThreads();
  if (tids) threadsAtStart = new Set(tids);
}

function listThreads(): number[] | undefined {
  try {
    return readdirSync('/proc/self/task').map(Number);
  } catch {
    return undefined;
  }
}

/** The split now, or undefined where /proc cannot tell or markThreadsAtStart() was not called. */
export function readThreadSplit(): ThreadSplit | undefined {
  const tids = listThreads();
  if (!tids || !threadsAtStart) return undefined;
  const split: ThreadSplit = { main: 0, helpers: 0, started: 0 };
  for (const tid of tids) {
    let ns: number;
    try {
      ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      continue; // exited meanwhile
    }
    const group: keyof ThreadSplit = tid === process.pid ? 'main' : threadsAtStart.has(tid) ? 'helpers' : 'started';
    split[group] += ns / 1000;
  }
  return split;
}

/** Per-job figures of the thread groups between two readings (threads that exited in between are missing). */
export function threadsPerJob(start: ThreadSplit | undefined, end: ThreadSplit | undefined, jobs: number): Record<string, number> {
  if (!start || !end) return {};
  return {
    mainThreadUsPerJob: (end.main - start.main) / jobs,
    helperThreadsUsPerJob: (end.helpers - start.helpers) / jobs,
    startedThreadsUsPerJob: (end.started - start.started) / jobs,
  };
}

/** Per-job figures between two readings: `cpuUsPerJob`, and `pgCpuUsPerJob` when the server was read. */
export function cpuPerJob(start: CpuReading, end: CpuReading, jobs: number): Record<string, number> {
  const figures: Record<string, number> = { cpuUsPerJob: (end.process - start.process) / jobs };
  if (start.postgres !== undefined && end.postgres !== undefined) figures.pgCpuUsPerJob = (end.postgres - start.postgres) / jobs;
  return figures;
}

interface ProcStat {
  ppid: number;
  /** utime + stime. */
  ticks: number;
  /** cutime + cstime: children that exited and were waited for. */
  childTicks: number;
}

/** /proc/<pid>/stat, or undefined when there is none (not Linux, gone, not readable). */
function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: the fields that follow start after its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 of proc(5): ppid is field 4, utime..cstime are fields 14 to 17.
  return {
    ppid: Number(fields[1]),
    ticks: Number(fields[11]) + Number(fields[12]),
    childTicks: Number(fields[13]) + Number(fields[14]),
  };
}

function isPostgres(pid: number): boolean {
  try {
    const name = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    return name === 'postgres' || name === 'postmaster';
  } catch {
    return false;
  }
}
