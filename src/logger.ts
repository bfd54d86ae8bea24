/** The pino logger every part of spindle writes to. */
import { createRequire } from 'node:module';
import pino from 'pino';
import type PinoPretty from 'pino-pretty';

/** pino-pretty is loaded only for a terminal: a tenth of spindle's import time, and log shippers never need it. */
const requirePretty = (): typeof PinoPretty => createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;

/**
 * What spindle's parts log through, `(fields, message)`: the four methods of a pino logger, so any
 * pino logger fits, and a part needs no pino to be given one.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  /** A logger whose every line carries `bindings` (pino's child loggers). */
  child?(bindings: Record<string, unknown>): Logger;
}

/** Something whose log lines carry who it is: a held job's logger names the job, its type, attempt and trace. */
export interface HasLog {
  readonly log: Logger;
}

/** `logger`, with `fields` on every line: a pino child logger, or a wrapper for a logger without children. */
export function loggerWith(logger: Logger, fields: Record<string, unknown>): Logger {
  if (typeof logger.child === 'function') return logger.child(fields);
  return {
    debug: (obj, msg) => logger.debug({ ...fields, ...obj }, msg),
    info: (obj, msg) => logger.info({ ...fields, ...obj }, msg),
    warn: (obj, msg) => logger.warn({ ...fields, ...obj }, msg),
    error: (obj, msg) => logger.error({ ...fields, ...obj }, msg),
    child: (more) => loggerWith(logger, { ...fields, ...more }),
  };
}

/** A pino logger, what startSupervisor() takes and createLogger() makes. */
export type PinoLogger = pino.Logger;

/** The logger used where none is given: discards everything, and loads nothing to do it. */
export const noopLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A pino logger at `level`: pretty on a TTY, JSON lines otherwise (for log shippers). */
export function createLogger(level: string = 'info', destination: NodeJS.WritableStream = process.stderr): PinoLogger {
  const tty = (destination as NodeJS.WriteStream).isTTY === true && process.env.NO_COLOR === undefined;
  if (tty) {
    return pino(
      { level, base: undefined },
      requirePretty()({ colorize: true, sync: true, destination, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' }),
    );
  }
  return pino({ level, base: undefined }, destination);
}

/** A logger that writes nothing. */
export const silentLogger: PinoLogger = pino({ level: 'silent' });
