/**
 * Every command of the `spindle` CLI: its arguments, flags, help text and examples. The parser
 * (args.ts), the help (help.ts) and the naming of library errors after flags (flag-names.ts) all
 * read this one table, so what a command accepts and what its help says cannot drift apart.
 */

/** One flag of a command. */
export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  /** How the value is shown in help: `--priority N`. */
  readonly value?: string;
  /** One line for the help. */
  readonly help: string;
  /** The library field the flag sets (`options.runAt`), so an error about that field names the flag instead. */
  readonly field?: string;
}

/** A command's flags by name, without the leading `--`. */
export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** One command. */
export interface CommandSpec {
  /** The arguments as the help shows them: `TYPE [JSON]`. */
  readonly args: string;
  /** How many arguments it takes, at least and at most. */
  readonly positionals: readonly [min: number, max: number];
  /** One line: what the command does. */
  readonly summary: string;
  /** More about it, printed under the usage line of its help (exit codes, what it prints). */
  readonly details?: string;
  readonly flags: FlagSpecs;
  readonly examples: readonly string[];
}

/** The flags every command takes. */
export const COMMON_FLAGS = {
  'database-url': {
    type: 'string',
    value: 'URL',
    help: 'PostgreSQL URL (default DATABASE_URL, else the embedded database of --state-dir)',
    field: 'options.databaseUrl',
  },
  'state-dir': { type: 'string', value: 'DIR', help: 'the embedded database and the debug socket live here (default SPINDLE_STATE_DIR, else ./.spindle)' },
  json: { type: 'boolean', help: 'print JSON instead of text' },
  help: { type: 'boolean', help: "print this command's help" },
} as const satisfies FlagSpecs;

const JOB_EXIT_CODES =
  'the exit code is 0 when the job succeeds, 1 when it fails, 3 when it times out, 4 when it is cancelled, 130 on Ctrl-C (the job goes on).';

/** The commands, in the order `spindle --help` lists them. */
export const COMMANDS = {
  start: {
    args: '',
    positionals: [0, 0],
    summary: 'run a supervisor: claim jobs and run them on worker threads until Ctrl-C or SIGTERM',
    details:
      'On SIGINT/SIGTERM it stops claiming, gives running jobs --shutdown-timeout to finish, puts the rest back in the queue (their attempt does not count) and exits 0.',
    flags: {
      workers: { type: 'string', value: 'DIR', help: 'directory of worker modules, one job type per file (default ./workers, or SPINDLE_WORKERS)', field: 'workers' },
      workflows: { type: 'string', value: 'DIR', help: 'directory of workflow modules (default ./workflows, when it exists)', field: 'workflows' },
      concurrency: { type: 'string', value: 'N', help: 'worker threads, 1 to 1024 (default: the available cores)', field: 'options.concurrency' },
      queues: { type: 'string', value: 'a,b', help: 'serve only these queues (default: all)', field: 'options.queues' },
      'log-level': { type: 'string', value: 'L', help: 'trace, debug, info, warn, error, fatal or silent (default info)', field: 'options.logLevel' },
      'shutdown-timeout': { type: 'string', value: 'MS', help: 'time running jobs get to finish on shutdown (default 10000)', field: 'options.shutdownTimeoutMs' },
      socket: { type: 'string', value: 'PATH', help: 'the debug socket `spindle inspect` reads (default STATE_DIR/run/supervisor.sock)', field: 'options.socket' },
      'no-socket': { type: 'boolean', help: 'serve no debug socket' },
      'debug-port': { type: 'string', value: 'N', help: 'also serve the debug protocol on 127.0.0.1:N, with a token (`spindle inspect --port N`)', field: 'options.debugPort' },
      'metrics-port': { type: 'string', value: 'N', help: 'serve Prometheus metrics at http://HOST:N/metrics', field: 'options.metricsPort' },
      'metrics-host': { type: 'string', value: 'H', help: 'address for --metrics-port (default 127.0.0.1)', field: 'options.metricsHost' },
      'http-port': { type: 'string', value: 'N', help: 'serve the HTTP API and the dashboard on this port', field: 'options.httpPort' },
      'http-host': { type: 'string', value: 'H', help: 'address for --http-port (default 127.0.0.1)', field: 'options.httpHost' },
      pooler: {
        type: 'string',
        value: 'P',
        help: "none, session or transaction: what --database-url points at (default none, or SPINDLE_POOLER); transaction needs --session-database-url",
        field: 'options.pooler',
      },
      'session-database-url': {
        type: 'string',
        value: 'URL',
        help: 'a URL that keeps a session (PostgreSQL itself) for LISTEN, the leader lock and migrations (or SPINDLE_SESSION_DATABASE_URL)',
        field: 'options.sessionDatabaseUrl',
      },
      id: { type: 'string', value: 'ID', help: 'a fixed supervisor id (default: host-pid-random); a restart with it takes its jobs back at once', field: 'options.id' },
    },
    examples: ['spindle start --workers ./workers --concurrency 4', 'spindle start --workflows ./workflows --http-port 8080'],
  },
  enqueue: {
    args: 'TYPE [JSON]',
    positionals: [1, 2],
    summary: 'enqueue a job of TYPE with JSON as its input (default null)',
    details: `With --wait, ${JOB_EXIT_CODES}`,
    flags: {
      wait: { type: 'boolean', help: 'wait for the job to end, showing its progress, and print its output' },
      queue: { type: 'string', value: 'Q', help: 'the queue (default "default")', field: 'options.queue' },
      priority: { type: 'string', value: 'N', help: 'higher runs first (default 0); a decimal integer, may be negative', field: 'options.priority' },
      'run-at': { type: 'string', value: 'ISO', help: 'not before this ISO 8601 date or date-time with its zone: 2026-12-02, 2026-12-02T10:00:00Z', field: 'options.runAt' },
      delay: { type: 'string', value: 'MS', help: 'not before this many milliseconds from now', field: 'options.delayMs' },
      timeout: { type: 'string', value: 'MS', help: "time limit of each attempt (default: the worker module's)", field: 'options.timeoutMs' },
      'max-attempts': { type: 'string', value: 'N', help: "attempts before it fails for good (default: the worker module's, else 3)", field: 'options.maxAttempts' },
      key: { type: 'string', value: 'K', help: 'while a job with this key is queued or running, return that job instead of a new one', field: 'options.key' },
      'concurrency-key': {
        type: 'string',
        value: 'K',
        help: "jobs with the same concurrency key share their type's per-key limits (`spindle limits`)",
        field: 'options.concurrencyKey',
      },
      'throttle-key': {
        type: 'string',
        value: 'K',
        help: 'at most one job per key per window (--throttle-ms): within it, return the job that opened it',
        field: 'options.throttle.key',
      },
      'throttle-ms': { type: 'string', value: 'MS', help: 'the window of --throttle-key', field: 'options.throttle.windowMs' },
      'debounce-key': {
        type: 'string',
        value: 'K',
        help: 'run MS (--debounce-ms) after the last enqueue of the key: a queued job of the key becomes this one',
        field: 'options.debounce.key',
      },
      'debounce-ms': { type: 'string', value: 'MS', help: 'the delay of --debounce-key', field: 'options.debounce.delayMs' },
    },
    examples: [
      `spindle enqueue primes '{"limit":1000000}' --priority 5 --wait`,
      'spindle enqueue report --key daily-2026-12-02 --run-at 2026-12-02T06:00:00Z',
      `spindle enqueue reindex '{"doc":42}' --debounce-key doc-42 --debounce-ms 5000`,
    ],
  },
  jobs: {
    args: '',
    positionals: [0, 0],
    summary: 'list jobs, newest first',
    flags: {
      state: { type: 'string', value: 'S', help: 'queued, running, succeeded, failed, timed_out or cancelled', field: 'filter.state' },
      type: { type: 'string', value: 'T', help: 'only jobs of this type', field: 'filter.type' },
      queue: { type: 'string', value: 'Q', help: 'only jobs of this queue', field: 'filter.queue' },
      limit: { type: 'string', value: 'N', help: 'at most this many, 1 to 1000 (default 20)', field: 'filter.limit' },
    },
    examples: ['spindle jobs --state failed --limit 50'],
  },
  job: {
    args: 'ID',
    positionals: [1, 1],
    summary: 'show a job: its state, current attempt, input, output or error, every attempt and the last logs',
    flags: {},
    examples: ['spindle job 42'],
  },
  watch: {
    args: 'ID',
    positionals: [1, 1],
    summary: 'follow a job until it ends: its attempt and a live progress bar',
    details: JOB_EXIT_CODES,
    flags: {},
    examples: ['spindle watch 42'],
  },
  cancel: {
    args: 'ID',
    positionals: [1, 1],
    summary: "cancel a job: a queued one at once, a running one by stopping its thread (then its module's compensate runs)",
    flags: { reason: { type: 'string', value: 'R', help: 'why, kept with the job', field: 'reason' } },
    examples: ["spindle cancel 42 --reason 'ordered twice'"],
  },
  retry: {
    args: 'ID',
    positionals: [1, 1],
    summary: 'put a failed, timed-out or cancelled job back in the queue',
    flags: {},
    examples: ['spindle retry 42'],
  },
  supervisors: {
    args: '',
    positionals: [0, 0],
    summary: 'list the live supervisors: what they serve, their jobs, their last heartbeat',
    flags: {},
    examples: ['spindle supervisors'],
  },
  limits: {
    args: '[set|clear SCOPE]',
    positionals: [0, 2],
    summary: 'list the flow-control limits and pauses, with what runs and waits; or set or clear an operator\'s limits on a type or queue',
    details:
      'SCOPE is a job type (resize, or type:resize) or a queue (queue:emails). Limits hold across every supervisor, over what the ' +
      "worker module declares; `none` lifts one. `clear` drops the operator's limits: the module's apply again.",
    flags: {
      'global-concurrency': { type: 'string', value: 'N', help: 'at most N of its jobs running at once, across every supervisor', field: 'limits.globalConcurrency' },
      'key-concurrency': { type: 'string', value: 'N', help: 'at most N running at once per concurrency key (types only)', field: 'limits.keyConcurrency' },
      rate: { type: 'string', value: 'N/WINDOW', help: 'at most N starts in any window: 20/1s, 100/1m, 5/500ms', field: 'limits.rateLimit' },
      'key-rate': { type: 'string', value: 'N/WINDOW', help: 'the same, per concurrency key (types only)', field: 'limits.keyRateLimit' },
      fair: { type: 'string', value: 'on|off', help: 'claim round-robin across concurrency keys (types only)', field: 'limits.fair' },
    },
    examples: [
      'spindle limits',
      'spindle limits set resize --global-concurrency 3',
      'spindle limits set charge --key-concurrency 1 --rate 20/1s --fair on',
      'spindle limits set queue:emails --rate 100/1m',
      'spindle limits clear resize',
    ],
  },
  pause: {
    args: 'SCOPE',
    positionals: [1, 1],
    summary: 'stop every supervisor claiming jobs of a type or queue (queue:NAME); running jobs finish',
    flags: {},
    examples: ['spindle pause resize', 'spindle pause queue:emails'],
  },
  resume: {
    args: 'SCOPE',
    positionals: [1, 1],
    summary: 'let a paused type or queue be claimed again',
    flags: {},
    examples: ['spindle resume queue:emails'],
  },
  'start-workflow': {
    args: 'NAME [JSON]',
    positionals: [1, 2],
    summary: 'start a run of the workflow NAME with JSON as its input (default null)',
    details: 'With --wait, the exit code is 0 when the run succeeds, 1 when it fails, 4 when it is cancelled, 130 on Ctrl-C (the run goes on).',
    flags: {
      id: { type: 'string', value: 'ID', help: 'the run id, an idempotency key: starting it again returns the first run (default: a UUID)', field: 'options.id' },
      wait: { type: 'boolean', help: 'wait for the run to end and print its output' },
    },
    examples: [`spindle start-workflow order '{"orderId":"A-17"}' --id order-A-17 --wait`],
  },
  workflows: {
    args: '',
    positionals: [0, 0],
    summary: 'list workflow runs, newest first',
    flags: {
      state: {
        type: 'string',
        value: 'S',
        help: 'running, sleeping, waiting, blocked, succeeded, failed, compensating, cancelled or compensation_failed',
        field: 'filter.state',
      },
      name: { type: 'string', value: 'N', help: 'only runs of this workflow', field: 'filter.name' },
      limit: { type: 'string', value: 'N', help: 'at most this many, 1 to 1000 (default 50)', field: 'filter.limit' },
    },
    examples: ['spindle workflows --state blocked'],
  },
  workflow: {
    args: 'ID',
    positionals: [1, 1],
    summary: 'show a workflow run and its recorded steps',
    flags: {},
    examples: ['spindle workflow order-A-17'],
  },
  signal: {
    args: 'RUN EVENT [JSON]',
    positionals: [2, 3],
    summary: "send the event EVENT, with JSON as its payload, to a run's inbox (kept until a wait takes it)",
    flags: {},
    examples: [`spindle signal order-A-17 approved '{"by":"ana"}'`],
  },
  'cancel-workflow': {
    args: 'RUN',
    positionals: [1, 1],
    summary: 'cancel a workflow run at its next step; its completed steps are compensated, newest first',
    flags: { reason: { type: 'string', value: 'R', help: 'why, kept with the run', field: 'reason' } },
    examples: ["spindle cancel-workflow order-A-17 --reason 'customer cancelled'"],
  },
  inspect: {
    args: '',
    positionals: [0, 0],
    summary: "show a running supervisor's actors, jobs in flight and pool, over its debug socket",
    flags: {
      watch: { type: 'boolean', help: 'redraw every second, like top, until Ctrl-C' },
      socket: { type: 'string', value: 'PATH', help: 'the debug socket (default STATE_DIR/run/supervisor.sock)' },
      port: { type: 'string', value: 'N', help: 'connect to the debug port of `spindle start --debug-port N` instead' },
    },
    examples: ['spindle inspect --watch', 'spindle inspect --port 9229 --json'],
  },
  migrate: {
    args: '',
    positionals: [0, 0],
    summary: "create or update spindle's schema in the database (a supervisor also does it when it starts)",
    flags: {},
    examples: ['spindle migrate --database-url postgres://localhost/app'],
  },
  demo: {
    args: '',
    positionals: [0, 0],
    summary: 'run a batch of CPU-heavy example jobs on a supervisor of its own and watch them',
    flags: {
      jobs: { type: 'string', value: 'N', help: 'how many jobs, 1 to 10000 (default 16)' },
      concurrency: { type: 'string', value: 'N', help: 'worker threads, 1 to 1024 (default: the available cores)', field: 'options.concurrency' },
      'log-level': { type: 'string', value: 'L', help: "the supervisor's log level (default warn)", field: 'options.logLevel' },
      socket: { type: 'string', value: 'PATH', help: 'its debug socket (default STATE_DIR/run/supervisor.sock)', field: 'options.socket' },
      'no-socket': { type: 'boolean', help: 'serve no debug socket (when a `spindle start` already serves it)' },
    },
    examples: ['spindle demo --jobs 32 --concurrency 4'],
  },
} as const satisfies Readonly<Record<string, CommandSpec>>;

/** The name of a command. */
export type CommandName = keyof typeof COMMANDS;

/** Whether `name` is a command. */
export function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMANDS, name);
}

/** The flags of a command, the common ones included. */
export function flagsOf(name: CommandName): FlagSpecs {
  return { ...COMMANDS[name].flags, ...COMMON_FLAGS };
}
