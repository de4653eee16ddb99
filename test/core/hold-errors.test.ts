import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../providers/fs/index.js';
import { S3Store } from '../../providers/s3/index.js';
import { ResponseBody } from '../../src/core/response-body.js';
import { TransientError } from '../../src/core/errors.js';
import { verifyingTransform } from '../../src/core/checksums.js';
import { RelayStream } from '../../src/layers/relay-stream.js';

/**
 * A get body fails on its own (a reset connection, an aborted signal) whether or not its caller
 * listens yet. Before, an 'error' event with no listener killed the process (vitest reports it as
 * an unhandled error, failing the run); now the failure waits for the reader.
 */
async function failsWhenRead(body: Readable, code: string): Promise<void> {
  await sleep(20); // the failure happens while nobody reads
  expect(body.destroyed).toBe(true);
  await expect((async () => {
    for await (const _ of body) { /* drain */ }
  })()).rejects.toMatchObject({ code });
}

const mapped = (e: unknown): Error => new TransientError(`mapped: ${(e as Error).message}`, { provider: 'test' });

describe('a get body failing before anyone reads it', () => {
  it('s3 and azure response bodies (with or without a check), verifying and relay bodies keep the error for the reader', async () => {
    for (const make of [
      (src: PassThrough) => new ResponseBody(src, mapped),
      (src: PassThrough) => new ResponseBody(src, mapped, { update: () => undefined, end: () => undefined }),
      (src: PassThrough) => {
        const v = verifyingTransform({ sha256: '0'.repeat(64) });
        src.once('error', (e) => v.destroy(mapped(e)));
        return src.pipe(v);
      },
    ]) {
      const src = new PassThrough();
      const body = make(src);
      src.write(Buffer.from('partial'));
      src.destroy(new Error('socket hang up'));
      await failsWhenRead(body, 'Transient');
    }
    const relay = new RelayStream({ read: () => Promise.reject(mapped(new Error('reset'))), destroy: () => undefined });
    relay.read(0); // a prefetch, as a first consumer read or maybeReadMore would start
    await failsWhenRead(relay, 'Transient');
  });

  it('s3 over the wire: a response cut after its headers, read later, is Transient', async () => {
    let server: Server | undefined;
    try {
      server = createServer((_req, res) => {
        res.writeHead(200, { 'content-length': '100000', etag: '"0123456789abcdef0123456789abcdef"', 'last-modified': new Date().toUTCString() });
        res.write(Buffer.alloc(10));
        setTimeout(() => res.socket?.destroy(), 5);
      });
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
      const port = (server.address() as AddressInfo).port;
      const store = new S3Store({ bucket: 'bkt', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
      const got = await store.get('k');
      await failsWhenRead(got.body, 'Transient');
      await store.close();
    } finally {
      server?.close();
    }
  });

  describe('fs', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'cloudmux-hold-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('a body whose signal aborts before it is read fails with Aborted when read', async () => {
      const store = new FsStore({ root: dir });
      await store.put('k', Buffer.alloc(1 << 20, 1));
      const ac = new AbortController();
      const got = await store.get('k', { signal: ac.signal });
      ac.abort();
      await failsWhenRead(got.body, 'Aborted');
    });
  });
});
