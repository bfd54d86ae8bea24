/**
 * The scenario registry's shapes. A scenario is one of three kinds:
 * - `system`: every selected system runs it, in turns, each run in a process of its own;
 * - `standalone`: runs once in the harness process against the database (spindle-only);
 * - `pending`: planned, listed in the output with what it waits for, not run.
 * A new scenario is a file that exports one of these and a line in index.ts.
 */
import type { RunningSystem } from '../systems/types.ts';
import type { WorkKind } from '../work.ts';

/** Which way a figure improves. */
export type Better = 'higher' | 'lower';

/** One figure a scenario reports. */
export interface Metric {
  key: string;
  /** Column label, e.g. `p50 ms`. */
  label: string;
  better: Better;
  /** Decimals shown. */
  digits: number;
}

/** Figures by metric key; a scenario may add keys beyond its declared metrics (kept in the JSON). */
export type Metrics = Record<string, number>;

/** Where a scenario's database is: `hop` puts a delay proxy in front of it (bench/network-hop.ts). */
export type Network = 'local' | 'hop';

/** What a system scenario's measure() gets besides the system. */
export interface MeasureContext {
  quick: boolean;
  /** Threads for systems that run handlers on threads. */
  threads: number;
  /** Which run this is (1-based): runs of one number share their random schedule. */
  run: number;
  /** The benchmark database, for a system that keeps its jobs in it (undefined for bare Piscina). */
  databaseUrl: string | undefined;
}

/** A scenario every selected system runs. */
export interface SystemScenario {
  kind: 'system';
  id: string;
  /** Its number in issue 8, e.g. `1`. */
  issueNumber: string;
  title: string;
  /** A word or two for column headers, e.g. `no-op`. */
  short: string;
  /** The one kind of job its runs enqueue. */
  work: WorkKind;
  /** The figures it reports; the first is the headline. */
  metrics: Metric[];
  /** Where the database is: on this machine (the default), or one network hop away (bench/network-hop.ts). */
  network?: Network;
  /** The size of a run, for people, e.g. `20,000 jobs`. */
  size(quick: boolean): string;
  /** How long one run (setup included) may take before its process is killed. */
  timeoutMs(quick: boolean): number;
  measure(system: RunningSystem, context: MeasureContext): Promise<Metrics>;
}

/** What a standalone scenario gets. */
export interface StandaloneContext {
  databaseUrl: string;
  quick: boolean;
  /** `--soak-minutes`, for the soak. */
  soakMinutes?: number;
  log(line: string): void;
}

/** A scenario that runs once, in the harness process, for one system. */
export interface StandaloneScenario {
  kind: 'standalone';
  id: string;
  issueNumber: string;
  title: string;
  /** The system it measures. */
  system: string;
  /** Run only when its flag is given (`--soak`), never by default nor with --quick. */
  optIn?: 'soak';
  metrics: Metric[];
  size(quick: boolean, soakMinutes?: number): string;
  /** Why it cannot run now, or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  run(context: StandaloneContext): Promise<Metrics>;
}

/** A planned scenario: listed, not run. */
export interface PendingScenario {
  kind: 'pending';
  id: string;
  issueNumber: string;
  title: string;
  /** What it waits for before it can be written. */
  waitingFor: string;
}

/** Any entry of the registry. */
export type Scenario = SystemScenario | StandaloneScenario | PendingScenario;
