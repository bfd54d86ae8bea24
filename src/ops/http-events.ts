/**
 * GET /api/events: the runtime's and the actors' events as Server-Sent Events, until the client
 * leaves or the server stops. A stream whose client does not read drops events once
 * `maxBufferedBytes` wait in it, and a `dropped` event says how many when it has caught up.
 */
import type { ServerResponse } from 'node:http';
import type { DebugSource } from './debug-source.ts';
import { HttpError, type RequestContext } from './http-wire.ts';
import { wireJson } from './wire-json.ts';

/** A comment line sent this often keeps proxies from closing a quiet stream. */
const SSE_PING_MS = 15_000;

/** Options of EventStreams. */
export interface EventStreamsOptions {
  /** The events streamed. */
  source: Pick<DebugSource, 'subscribe'>;
  /** Streams open at once; the next get 503. */
  maxClients: number;
  /** Bytes waiting in one stream beyond which its events are dropped. */
  maxBufferedBytes: number;
  /** Called when an event could not be sent. */
  onError: (err: unknown, event: string) => void;
}

/** The open event streams of one HTTP server. */
export class EventStreams {
  readonly #o: EventStreamsOptions;
  readonly #streams = new Set<ServerResponse>();
  #dropped = 0;

  constructor(options: EventStreamsOptions) {
    this.#o = options;
  }

  /** Streams open now. */
  get open(): number {
    return this.#streams.size;
  }

  /** Events dropped for streams that did not read, in all. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Serves one stream; `?job=ID` keeps the `job:*` events of that job only. */
  serve({ req, res, url }: RequestContext): void {
    if (this.#streams.size >= this.#o.maxClients) {
      throw new HttpError(503, `too many event streams open (${this.#o.maxClients})`);
    }
    const jobFilter = url.searchParams.get('job');
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.write(': spindle events\n\n');
    res.socket?.setTimeout(0);
    this.#streams.add(res);
    let dropped = 0;
    const write = (event: string, data: unknown) => {
      if (res.writableLength > this.#o.maxBufferedBytes) {
        dropped++;
        this.#dropped++;
        return;
      }
      if (dropped > 0) {
        res.write(`event: dropped\ndata: ${JSON.stringify({ count: dropped })}\n\n`);
        dropped = 0;
      }
      res.write(`event: ${event}\ndata: ${wireJson(data)}\n\n`);
    };
    const unsubscribe = this.#o.source.subscribe((event, data) => {
      if (jobFilter && event.startsWith('job:') && (data as { id?: unknown }).id !== jobFilter) return;
      try {
        write(event, data);
      } catch (err) {
        this.#o.onError(err, event);
      }
    });
    const ping = setInterval(() => res.write(': ping\n\n'), SSE_PING_MS);
    ping.unref();
    const done = () => {
      clearInterval(ping);
      unsubscribe();
      this.#streams.delete(res);
    };
    req.on('close', done);
    res.on('close', done);
  }

  /** Ends every stream (the server is stopping). */
  endAll(): void {
    for (const res of this.#streams) res.end();
    this.#streams.clear();
  }
}
