/** The pino logger every part of spindle writes to. */
import { createRequire } from 'node:module';
import pino from 'pino';
import type PinoPretty from 'pino-pretty';

/** pino-pretty is loaded only for a terminal: a tenth of spindle's import time, and log shippers never need it. */
const requirePretty = (): typeof PinoPretty => createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;

export type Logger = pino.Logger;

/** A pino logger at `level`: pretty on a TTY, JSON lines otherwise (for log shippers). */
export function createLogger(level: string = 'info', destination: NodeJS.WritableStream = process.stderr): Logger {
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
export const silentLogger: Logger = pino({ level: 'silent' });
