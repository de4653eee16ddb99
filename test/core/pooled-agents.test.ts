import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPooledAgents, isStaleConnectionError } from '../../src/core/pooled-agents.js';
import { startStaleConnectionServer, type StaleConnectionServer } from '../harness/stale-connection-server.js';

/** One GET through `agent`; resolves with the body or rejects with the request's error. */
function get(url: string, agent: ReturnType<typeof createPooledAgents>['http']): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve(Buffer.concat(parts).toString()));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('pooled agents', () => {
  let server: StaleConnectionServer;
  beforeAll(async () => {
    server = await startStaleConnectionServer((_req, res) => res.end('ok'), 'answer');
  });
  afterAll(async () => {
    await server.close();
  });

  it('reuse one connection for requests in a row', async () => {
    server.mode = 'answer';
    const { http } = createPooledAgents();
    const before = server.connections();
    expect(await get(server.url, http)).toBe('ok');
    expect(await get(server.url, http)).toBe('ok');
    expect(server.connections() - before).toBe(1);
    http.destroy();
  });

  it('close a connection that stays idle longer than idleSocketMs, before the server would', async () => {
    // A server of its own, so that no other test's connection closes count.
    const quiet = await startStaleConnectionServer((_req, res) => res.end('ok'), 'answer');
    const { http } = createPooledAgents({ idleSocketMs: 50 });
    expect(await get(quiet.url, http)).toBe('ok');
    expect(quiet.closedByClient()).toBe(0);
    // Node's own hint handling would close it after 4 s (the server's 5 s minus 1 s): well past this wait.
    await vi.waitFor(() => expect(quiet.closedByClient()).toBe(1), { timeout: 3_000, interval: 20 });
    http.destroy();
    await quiet.close();
  });

  it('mark a failure on a reused connection before any answer byte as stale, and nothing else', async () => {
    server.mode = 'kill-reused';
    const { http } = createPooledAgents();
    expect(await get(server.url, http)).toBe('ok');
    const onReused = await get(server.url, http).catch((e: unknown) => e);
    expect((onReused as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    expect(isStaleConnectionError(onReused)).toBe(true);
    server.mode = 'kill-all';
    const onFresh = await get(server.url, http).catch((e: unknown) => e);
    expect((onFresh as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    expect(isStaleConnectionError(onFresh)).toBe(false);
    expect(isStaleConnectionError(new Error('x'))).toBe(false);
    http.destroy();
  });
});
