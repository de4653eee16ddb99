import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * What the server does with a request that arrives on a connection:
 * - `kill-reused`: answers the first request of each connection; the next one on the same
 *   connection closes it unanswered, as a server does when its idle timeout fires just as a
 *   pooled connection is reused;
 * - `kill-all`: closes every connection unanswered (a reset that no reuse explains);
 * - `answer`: answers everything.
 */
export type StaleMode = 'kill-reused' | 'kill-all' | 'answer';

export interface StaleConnectionServer {
  url: string;
  mode: StaleMode;
  /** `METHOD path?query` of every request that arrived, answered or not. */
  readonly requests: string[];
  /** Connections accepted so far. */
  readonly connections: () => number;
  /** Connections the client closed so far. */
  readonly closedByClient: () => number;
  close(): Promise<void>;
}

/**
 * A loopback HTTP server for connection-reuse tests. `answer` handles the requests the mode lets
 * through, with the request body already read; requests `killable` rejects are always answered.
 */
export async function startStaleConnectionServer(
  answer: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void,
  mode: StaleMode = 'kill-reused',
  killable: (req: IncomingMessage) => boolean = () => true,
): Promise<StaleConnectionServer> {
  const perSocket = new WeakMap<Socket, number>();
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  let connections = 0;
  let closedByClient = 0;
  const server = createServer((req, res) => {
    const socket = req.socket;
    const n = (perSocket.get(socket) ?? 0) + 1;
    perSocket.set(socket, n);
    requests.push(`${req.method} ${req.url}`);
    if (killable(req) && (handle.mode === 'kill-all' || (handle.mode === 'kill-reused' && n > 1))) {
      socket.destroy();
      return;
    }
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => answer(req, res, Buffer.concat(parts)));
  });
  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // A FIN from the client: it closed the connection (the server's own closes emit no 'end').
    socket.once('end', () => closedByClient++);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const handle: StaleConnectionServer = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    mode,
    requests,
    connections: () => connections,
    closedByClient: () => closedByClient,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  return handle;
}
