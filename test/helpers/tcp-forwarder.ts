/**
 * A TCP forwarder of our own in the host's namespace: it listens on an address a network namespace
 * can reach (its veth's host end) and joins each connection to the database's address, so a process
 * in the namespace reaches a PostgreSQL that listens on 127.0.0.1 only, without touching its config.
 * It forwards bytes and nothing else: a connection ends when either side ends it.
 */
import net from 'node:net';

export class TcpForwarder {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  private constructor(target: { host: string; port: number }) {
    this.#server = net.createServer((inbound) => {
      const outbound = net.connect(target.port, target.host);
      const end = () => {
        inbound.destroy();
        outbound.destroy();
      };
      for (const socket of [inbound, outbound]) {
        this.#sockets.add(socket);
        socket.on('error', end).on('close', () => {
          this.#sockets.delete(socket);
          end();
        });
      }
      inbound.pipe(outbound);
      outbound.pipe(inbound);
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

  /** Stops listening and ends every forwarded connection. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
