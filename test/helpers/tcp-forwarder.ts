/**
 * A TCP forwarder of our own: it listens on an address the client can reach (a veth's host end, for
 * a network namespace) and joins each connection to the database's address, so a process in a
 * namespace reaches a PostgreSQL that listens on 127.0.0.1 only, without touching its config. It
 * forwards bytes and nothing else: a connection ends when either side ends it. `freeze()` stops
 * forwarding without closing anything (a proxy that went silent): what the client sends gets no
 * answer and no error, as over a link that went down, until `thaw()`; a connection the database
 * ends meanwhile (a backend terminated) reaches the client as ended only then.
 */
import net from 'node:net';

/** One forwarded connection: the client's side and the database's. */
interface Pair {
  inbound: net.Socket;
  outbound: net.Socket;
  /** One side ended while frozen: the other is ended at the thaw. */
  ended: boolean;
}

export class TcpForwarder {
  readonly #server: net.Server;
  readonly #pairs = new Set<Pair>();
  #frozen = false;

  private constructor(target: { host: string; port: number }) {
    this.#server = net.createServer((inbound) => {
      const pair: Pair = { inbound, outbound: net.connect(target.port, target.host), ended: false };
      const end = () => {
        if (this.#frozen) {
          pair.ended = true;
          return;
        }
        TcpForwarder.#end(pair);
        this.#pairs.delete(pair);
      };
      for (const socket of [pair.inbound, pair.outbound]) socket.on('error', end).on('close', end);
      this.#pairs.add(pair);
      if (this.#frozen) TcpForwarder.#hold(pair);
      else TcpForwarder.#join(pair);
    });
  }

  /** Listens on `listenHost` (a free port) and forwards to `target`. */
  static async start(listenHost: string, target: { host: string; port: number }): Promise<TcpForwarder> {
    const forwarder = new TcpForwarder(target);
    await new Promise<void>((resolve, reject) => {
      forwarder.#server.once('error', reject);
      forwarder.#server.listen(0, listenHost, () => resolve());
    });
    return forwarder;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** Stops forwarding, both ways, on every connection and on those made meanwhile; nothing is closed. */
  freeze(): void {
    this.#frozen = true;
    for (const pair of this.#pairs) TcpForwarder.#hold(pair);
  }

  /** Forwards again, starting with what was held. */
  thaw(): void {
    this.#frozen = false;
    for (const pair of this.#pairs) {
      if (pair.ended) {
        TcpForwarder.#end(pair);
        this.#pairs.delete(pair);
      } else {
        TcpForwarder.#join(pair);
      }
    }
  }

  /** Stops listening and ends every forwarded connection. */
  async close(): Promise<void> {
    for (const pair of this.#pairs) TcpForwarder.#end(pair);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  static #end({ inbound, outbound }: Pair): void {
    inbound.destroy();
    outbound.destroy();
  }

  static #join({ inbound, outbound }: Pair): void {
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  }

  static #hold({ inbound, outbound }: Pair): void {
    inbound.unpipe(outbound);
    outbound.unpipe(inbound);
    inbound.pause();
    outbound.pause();
  }
}
