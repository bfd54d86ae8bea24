/** Binding and closing the HTTP servers of the http and metrics actors. */
import type { Server } from 'node:http';

/** Listens on host:port (0: any free port); resolves with the port bound, rejects with the listen error. */
export async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen({ host, port }, () => {
      server.off('error', fail);
      done();
    });
  });
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : port;
}

/** Closes the server, and the connections it still has (keep-alive ones would hold it open). */
export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((done) => server.close(() => done()));
}

/** Brackets an IPv6 address for a URL. */
export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
