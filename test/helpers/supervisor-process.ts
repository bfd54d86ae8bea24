/**
 * A supervisor in a child process (test/fixtures/run-supervisor.ts), so a test can SIGKILL, SIGSTOP
 * and SIGTERM it, and what it has said: its pino log lines and the fixture's event lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { SupervisorOptions } from '../../src/config.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RUN_SUPERVISOR = fileURLToPath(new URL('../fixtures/run-supervisor.ts', import.meta.url));

/** A line a supervisor wrote: a pino log line (`msg`) or one of run-supervisor.ts's events (`event`). */
export interface Line {
  event?: string;
  msg?: string;
  /** Date.now() in this process when the line arrived. */
  receivedAt: number;
  [key: string]: unknown;
}

/** A supervisor in a child process, and what it has said. */
export class SupervisorProcess {
  readonly child: ChildProcess;
  readonly lines: Line[] = [];
  stderr = '';
  exitStatus: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  /** Date.now() when it exited. */
  exitedAt: number | undefined;
  readonly exited: Promise<void>;
  id = '';
  readonly #waiters = new Set<() => void>();
  readonly #listeners = new Set<(line: Line) => void>();

  /** `launcher`: a command prefix the process runs under (`ip netns exec NAME` puts it in a network namespace). */
  constructor(options: SupervisorOptions, env: NodeJS.ProcessEnv = {}, launcher: string[] = []) {
    const command = [...launcher, process.execPath, '--import', 'tsx', RUN_SUPERVISOR, JSON.stringify(options)];
    this.child = spawn(command[0]!, command.slice(1), {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (text) => {
      let line: Line;
      try {
        line = { ...(JSON.parse(text) as object), receivedAt: Date.now() };
      } catch {
        line = { msg: text, receivedAt: Date.now() };
      }
      this.lines.push(line);
      for (const listener of this.#listeners) listener(line);
      this.#notify();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-20_000);
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        this.exitedAt = Date.now();
        this.#notify();
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Calls `listener` with every line from now on. */
  onLine(listener: (line: Line) => void): void {
    this.#listeners.add(listener);
  }

  /** Resolves once the supervisor has started (and knows its id). */
  async ready(timeoutMs: number): Promise<this> {
    const line = await this.waitFor((l) => l.event === 'ready', timeoutMs, 'ready');
    this.id = String(line.id);
    return this;
  }

  /** The first line (already received or to come, from index `from`) that matches; rejects on timeout or exit. */
  waitFor(match: (line: Line) => boolean, timeoutMs: number, what: string, from = 0): Promise<Line> {
    return new Promise((resolve, reject) => {
      let index = from;
      const check = () => {
        for (; index < this.lines.length; index++) {
          if (match(this.lines[index]!)) {
            done();
            resolve(this.lines[index]!);
            return;
          }
        }
        if (this.exitStatus) {
          done();
          reject(new Error(`supervisor ${this.id || this.pid} exited (${JSON.stringify(this.exitStatus)}) before ${what}\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`supervisor ${this.id || this.pid}: no ${what} within ${timeoutMs} ms\n${this.tail()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** All lines so far that match. */
  all(match: (line: Line) => boolean): Line[] {
    return this.lines.filter(match);
  }

  /** The runtime snapshot (startSupervisor's `snapshot()`), asked for over stdin. */
  async snapshot(): Promise<unknown> {
    const from = this.lines.length;
    this.child.stdin!.write('snapshot\n');
    const line = await this.waitFor((l) => l.event === 'snapshot', 5_000, 'snapshot', from);
    return line.snapshot;
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.exitStatus) this.child.kill(signal);
  }

  /** Graceful stop (SIGTERM), as `spindle start` does it. */
  async stop(): Promise<void> {
    this.signal('SIGTERM');
    await this.exited;
  }

  /** What it said last, for failure messages. */
  tail(): string {
    const out = this.lines.slice(-15).map((l) => JSON.stringify(l)).join('\n');
    return `--- last stdout lines ---\n${out}\n--- stderr ---\n${this.stderr.slice(-3_000)}`;
  }

  #notify(): void {
    for (const check of [...this.#waiters]) check();
  }
}
