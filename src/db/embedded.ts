/**
 * The embedded PostgreSQL default, used when there is no DATABASE_URL, shared by every process of
 * a state dir: supervisors, CLI commands, several of each.
 *
 * startEmbedded() makes the caller a user of the server: it starts the server when none runs
 * (embedded-server.ts, one process at a time) and holds a member session on it
 * (embedded-members.ts). stop() ends the session, and stops the server when no other user holds
 * one. Users are counted by PostgreSQL itself, so a user that dies (kill -9) no longer counts and a
 * user that started the server may leave first: the server stays up for the others.
 *
 * When the server goes away under its users (its postmaster killed, or stopped from outside), every
 * user's member session ends; each starts it again, and the start lock makes one of them do it while
 * the others wait and join it. It comes back on the same port when that port is free, so the URL
 * that a user's connection pools hold stays right and they reconnect by themselves.
 */
import type pg from 'pg';
import * as path from 'node:path';
import { isLastMember, joinMembers } from './embedded-members.ts';
import { EmbeddedPostgresError } from '../errors.ts';
import { shutdownPostmaster } from './embedded-process.ts';
import { ensureRunning, prepareSite, type RunningServer, type ServerSite, type StartEmbeddedOptions } from './embedded-server.ts';
import { defaultStateDir, removeStateIf } from './embedded-state.ts';

export type { StartEmbeddedOptions } from './embedded-server.ts';
export {
  connectionStringFor,
  defaultStateDir,
  readEmbeddedState,
  resolveStateDir,
  type EmbeddedState,
} from './embedded-state.ts';

/** One user's hold on the embedded server. */
export interface EmbeddedServer {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres`; the same after a restart unless its port was taken. */
  readonly url: string;
  readonly port: number;
  /** The postmaster's pid (a new one after a restart). */
  readonly pid: number;
  readonly dataDir: string;
  /** True when the server was running already (another user started it, or one left it behind). */
  readonly reused: boolean;
  /** Stops using the server, and stops the server when no other user is left. Idempotent. */
  stop(): Promise<void>;
}

/** Joining tries this many times while the server it found is being stopped by its last user. */
const JOIN_ATTEMPTS = 5;
/** Waits between tries to bring a lost server back, growing to the last. */
const RECOVERY_BACKOFF_MS = [100, 250, 500, 1_000, 2_000, 5_000];
/** A join that failed is tried again after this pause. */
const JOIN_RETRY_MS = 100;

/** Starts (or finds and joins) the embedded PostgreSQL for `stateDir`. */
export async function startEmbedded(opts: StartEmbeddedOptions = {}): Promise<EmbeddedServer> {
  const site = await prepareSite({ ...opts, stateDir: path.resolve(opts.stateDir ?? defaultStateDir()) });
  const user = new EmbeddedUser(site);
  await user.join();
  return user;
}

/** A user of the server: holds a member session, brings the server back when it goes, leaves once. */
class EmbeddedUser implements EmbeddedServer {
  readonly #site: ServerSite;
  #running!: RunningServer;
  #member: pg.Client | undefined;
  #reused = false;
  #leaving = false;
  readonly #recoveryAbort = new AbortController();
  #recovery: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(site: ServerSite) {
    this.#site = site;
  }

  get url(): string {
    return this.#running.url;
  }

  get port(): number {
    return this.#running.port;
  }

  get pid(): number {
    return this.#running.pid;
  }

  get dataDir(): string {
    return this.#site.dataDir;
  }

  get reused(): boolean {
    return this.#reused;
  }

  /** Becomes a user: finds or starts the server and opens the member session. */
  async join(): Promise<void> {
    this.#reused = (await this.#connect()).reused;
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#leave();
    return this.#stopping;
  }

  async #connect(): Promise<RunningServer> {
    for (let attempt = 1; ; attempt++) {
      const running = await ensureRunning(this.#site);
      try {
        const member = await joinMembers(running.url, this.#site.probeTimeoutMs);
        this.#running = running;
        this.#member = member;
        member.once('end', () => this.#lost(member));
        return running;
      } catch (error) {
        if (attempt >= JOIN_ATTEMPTS) {
          throw new EmbeddedPostgresError(
            `Could not join the embedded PostgreSQL (pid ${running.pid}, port ${running.port}): ${(error as Error).message}`,
          );
        }
        // Most likely its last user is stopping it: the next ensureRunning waits until it is gone
        // and starts it again.
        await sleep(JOIN_RETRY_MS, this.#recoveryAbort.signal);
      }
    }
  }

  #lost(member: pg.Client): void {
    if (member !== this.#member || this.#leaving) return;
    this.#member = undefined;
    this.#site.log.warn(
      { pid: this.pid, port: this.port },
      'embedded PostgreSQL went away; starting it again (or joining the user that does)',
    );
    this.#recovery = this.#recover().finally(() => (this.#recovery = undefined));
  }

  async #recover(): Promise<void> {
    const before = this.url;
    for (let attempt = 0; !this.#leaving; attempt++) {
      try {
        const running = await this.#connect();
        this.#site.log.info({ pid: running.pid, port: running.port, restartedHere: !running.reused }, 'embedded PostgreSQL is back');
        if (running.url !== before) {
          this.#site.log.error(
            { before: portOf(before), now: running.port },
            'embedded PostgreSQL came back on another port (its port was taken): connections made with the old URL fail; restart this process',
          );
        }
        return;
      } catch (error) {
        const waitMs = RECOVERY_BACKOFF_MS[Math.min(attempt, RECOVERY_BACKOFF_MS.length - 1)]!;
        this.#site.log.warn({ error: (error as Error).message, retryInMs: waitMs }, 'embedded PostgreSQL: cannot bring it back yet');
        await sleep(waitMs, this.#recoveryAbort.signal);
      }
    }
  }

  async #leave(): Promise<void> {
    this.#leaving = true;
    this.#recoveryAbort.abort();
    await this.#recovery;
    const member = this.#member;
    this.#member = undefined;
    if (!member) return; // the server went away and was not brought back: nothing to leave
    const { pid, child } = this.#running;
    // A failed count means the server is already gone.
    const last = await isLastMember(member).catch(() => false);
    if (last) {
      const t0 = performance.now();
      await shutdownPostmaster(pid, child, this.#site.log);
      removeStateIf(this.#site.stateDir, (s) => s.pid === pid);
      this.#site.log.info({ pid, ms: Math.round(performance.now() - t0) }, 'embedded PostgreSQL stopped (its last user left)');
    } else {
      this.#site.log.debug({ pid }, 'embedded PostgreSQL left running for its other users');
    }
    await member.end().catch(() => {});
  }
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
