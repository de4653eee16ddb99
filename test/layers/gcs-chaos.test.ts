import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GcsStore } from '../../providers/gcs/index.js';
import type { ResilientStack } from '../../src/layers/index.js';
import type { FaultProxy } from '../faults/proxy.js';
import { chaosProxy, chaosStack, cleanUpChaos, runChaosWorkload } from './chaos-workload.js';

/**
 * The chaos workload (see chaos-workload.ts) over the real GCS SDK and the GCS test server, with
 * the fault proxy between them answering its own 503/429s as GCS JSON errors. 1 MiB resumable
 * chunks put the 1.5 MB objects and the streamed one on the resumable path, whose session
 * requests go through the proxy too (the server builds the session URI from the Host header).
 */
const endpoint = process.env.GCS_EMULATOR_HOST;
const bucket = process.env.GCS_BUCKET ?? 'cloudmux-test';
const NO_GCS = 'no GCS endpoint: the harness started no GCS test server (CLOUDMUX_EMULATORS excludes gcs)';

describe('resilience layers over GCS through a fault proxy', () => {
  let proxy: FaultProxy | undefined;
  let stack: ResilientStack | undefined;

  beforeAll(async () => {
    if (!endpoint) return;
    const res = await fetch(`${endpoint}/storage/v1/b?project=test-project`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: bucket }) });
    if (!res.ok && res.status !== 409) throw new Error(`cannot create bucket ${bucket}: HTTP ${res.status}`);
    // Only media downloads carry bytes the driver verifies; a flipped object resource or listing
    // is JSON no client could check.
    proxy = await chaosProxy(endpoint, { protocol: 'gcs', canFlip: (r) => r.method === 'GET' && /[?&]alt=media/.test(r.path) });
    stack = chaosStack(new GcsStore({
      bucket, apiEndpoint: proxy.url, projectId: 'test-project', prefix: `chaos-${randomBytes(3).toString('hex')}`,
      singleRequestThreshold: 1024 * 1024, chunkSize: 1024 * 1024,
    }));
  });

  afterAll(() => cleanUpChaos(proxy, stack));

  it('a put/get/list workload at 20% faults completes with every byte verified', async (ctx) => {
    if (!endpoint || !stack || !proxy) return ctx.skip(NO_GCS);
    const r = await runChaosWorkload('gcs', stack, proxy, { largeSize: 3 * 1024 * 1024 });
    expect(r.faults.resetResponse ?? 0).toBeGreaterThan(0);
    expect(r.integrityErrors).toBe(r.faults.flipByte ?? 0);
    // The resumable path ran through the proxy: chunk PUTs to session URIs (which of them a fault
    // hit depends on the seed).
    expect(proxy.log.filter((e) => e.method === 'PUT' && /upload_id=/.test(e.path)).length).toBeGreaterThanOrEqual(11);
  });
});
