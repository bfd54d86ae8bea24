/**
 * Ctrl-C during a wait ends the wait, not the job or run waited for. The first SIGINT (or SIGTERM)
 * prints what goes on and how to follow it again, and aborts `signal`: the command then returns
 * through its normal path, closing what it opened, and exits 130 (143).
 *
 * The listener runs before any other (another one may stop an embedded server the command started,
 * and exit when done), prints synchronously, never calls process.exit itself, and is removed after
 * the first signal: a second Ctrl-C gets the other listeners, or Node's default, which ends the process.
 */

/** A wait that Ctrl-C ends. */
export interface Interruptible {
  /** Aborts at the first SIGINT or SIGTERM. */
  readonly signal: AbortSignal;
  /** 130 after SIGINT, 143 after SIGTERM, undefined while not interrupted. */
  exitCode(): number | undefined;
  /** Stops listening (the wait is over). */
  dispose(): void;
}

const EXIT_CODES: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/** Listens for Ctrl-C until dispose(); on it, writes `message()` (one line) to stderr and aborts. */
export function interruptible(message: () => string): Interruptible {
  const controller = new AbortController();
  let code: number | undefined;
  const listeners = new Map<'SIGINT' | 'SIGTERM', () => void>();
  const dispose = () => {
    for (const [name, listener] of listeners) process.off(name, listener);
    listeners.clear();
  };
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    const listener = () => {
      dispose();
      code = EXIT_CODES[name];
      process.stderr.write(`${message()}\n`);
      controller.abort();
    };
    listeners.set(name, listener);
    process.prependListener(name, listener);
  }
  return { signal: controller.signal, exitCode: () => code, dispose };
}
