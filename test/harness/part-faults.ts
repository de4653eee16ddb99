import type { BlobStore } from '../../src/core/index.js';
import type { PartFaultHarness, PartRequest } from '../../src/testing/index.js';
import { FaultProxy, type ProxyLogEntry, type ProxyRequestInfo } from '../faults/proxy.js';

/** Which provider's part-data requests to recognise. */
export type PartProtocol = 's3' | 'azure' | 'gcs';

/**
 * The part a request carries data for, or undefined when it carries none: S3 UploadPart
 * (`?partNumber=N&uploadId=…`), Azure Put Block (`?comp=block&blockid=…`), GCS resumable chunk
 * (a PUT to the session with `Content-Range: bytes a-b/…`; status queries are `bytes *\/…`).
 */
export function partOf(protocol: PartProtocol, req: { method: string; path: string; contentRange?: string }): string | undefined {
  if (req.method !== 'PUT') return undefined;
  const q = new URL(req.path, 'http://x').searchParams;
  if (protocol === 's3') return q.has('uploadId') && q.has('partNumber') ? `part ${q.get('partNumber')}` : undefined;
  if (protocol === 'azure') return q.get('comp') === 'block' && q.has('blockid') ? `block ${q.get('blockid')}` : undefined;
  const m = /^bytes (\d+-\d+)\//.exec(req.contentRange ?? '');
  return q.has('upload_id') && m ? `bytes ${m[1]}` : undefined;
}

/**
 * A {@link PartFaultHarness} for the conformance suite: each `create()` starts a FaultProxy in
 * front of `upstream` and builds the store through it with `makeStore(proxyUrl)`; `resetPart(n)`
 * makes the proxy drop the n-th part-data request after part of its body arrived.
 */
export function partFaultHarness(protocol: PartProtocol, upstream: string, bodySize: number, makeStore: (proxyUrl: string) => Promise<BlobStore> | BlobStore): PartFaultHarness {
  let proxy: FaultProxy | undefined;
  let from = 0;
  let target = 0;
  let seen = 0;
  const entryOf = (info: ProxyRequestInfo): { method: string; path: string; contentRange?: string } => ({
    method: info.method, path: info.path, ...(typeof info.headers['content-range'] === 'string' ? { contentRange: info.headers['content-range'] } : {}),
  });
  return {
    bodySize,
    async create() {
      proxy = await FaultProxy.start({
        upstream,
        decide: (info) => {
          if (partOf(protocol, entryOf(info)) === undefined) return null;
          seen++;
          return seen === target ? 'resetRequest' : null;
        },
      });
      return makeStore(proxy.url);
    },
    resetPart(n: number) {
      from = proxy?.log.length ?? 0;
      seen = 0;
      target = n;
    },
    partRequests(): PartRequest[] {
      const out: PartRequest[] = [];
      for (const e of (proxy?.log ?? []).slice(from) as ProxyLogEntry[]) {
        const part = partOf(protocol, e);
        if (part !== undefined) out.push({ part, reset: e.fault === 'resetRequest' });
      }
      return out;
    },
    async close() {
      await proxy?.close();
      proxy = undefined;
    },
  };
}
