// Listing a GCS bucket in cloudmux's order: objects and common prefixes merged into byte order,
// `startAfter` exclusive over GCS's inclusive `startOffset`.
import type { Bucket, File } from '@google-cloud/storage';
import { compareKeys, throwIfAborted } from '../../src/core/index.js';
import type { ListItem, ListOptions } from '../../src/core/index.js';
import { checksumsOf, type GcsObjectResource } from './checksums.js';
import { PROVIDER } from './config.js';
import { mapGcsError, type GcsErrorContext } from './errors.js';
import { etagOf } from './resource.js';

/** The objects and prefixes of `bucket` under `root` + `opts.prefix`, as keys relative to `root`. */
export async function* listObjects(bucket: Bucket, root: string, opts: ListOptions, ctx: GcsErrorContext): AsyncGenerator<ListItem> {
  const prefix = opts.prefix ?? '';
  const keyOf = (name: string): string => name.slice(root.length);
  const fullPrefix = root + prefix;
  const startOffset = opts.startAfter !== undefined ? root + opts.startAfter : undefined;
  const pageSize = Math.max(1, Math.min(1000, opts.pageSize ?? 1000));
  // startOffset is inclusive: with a delimiter, startAfter itself can come back rolled up into
  // its common prefix, which then must appear only if some key after startAfter shares it.
  let startAfterPrefix: string | undefined;
  if (opts.delimiter && startOffset !== undefined && startOffset.startsWith(fullPrefix)) {
    const at = startOffset.indexOf(opts.delimiter, fullPrefix.length);
    if (at >= 0) startAfterPrefix = startOffset.slice(0, at + opts.delimiter.length);
  }
  let pageToken: string | undefined;
  let lastPrefix: string | undefined;
  do {
    throwIfAborted(opts.signal, { provider: PROVIDER });
    let files: File[];
    let next: { pageToken?: string } | null;
    let response: { prefixes?: string[] };
    try {
      [files, next, response] = (await bucket.getFiles({
        prefix: fullPrefix,
        autoPaginate: false,
        maxResults: pageSize,
        ...(opts.delimiter ? { delimiter: opts.delimiter } : {}),
        ...(startOffset !== undefined ? { startOffset } : {}),
        ...(pageToken ? { pageToken } : {}),
      })) as unknown as [File[], { pageToken?: string } | null, { prefixes?: string[] }];
    } catch (e) {
      throw mapGcsError(e, ctx);
    }
    // GCS returns a page's objects and prefixes apart; merge them back into byte order.
    const items: ListItem[] = [];
    for (const f of files) {
      // startOffset is inclusive; startAfter is not.
      if (f.name === startOffset) continue;
      const r = f.metadata as GcsObjectResource;
      items.push({
        type: 'object',
        key: keyOf(f.name),
        size: Number(r.size ?? 0),
        etag: etagOf(r),
        lastModified: new Date(r.updated ?? r.timeCreated ?? 0),
        version: String(r.generation),
        checksums: checksumsOf(r),
      });
    }
    for (const p of response?.prefixes ?? []) {
      if (p === lastPrefix) continue;
      if (p === startAfterPrefix) {
        startAfterPrefix = undefined;
        if (!(await hasNameAfter(bucket, p, startOffset!, ctx))) continue;
      }
      items.push({ type: 'prefix', prefix: keyOf(p) });
    }
    items.sort((a, b) => compareKeys(a.type === 'object' ? a.key : a.prefix, b.type === 'object' ? b.key : b.prefix));
    for (const item of items) {
      if (item.type === 'prefix') lastPrefix = root + item.prefix;
      yield item;
    }
    pageToken = next?.pageToken;
  } while (pageToken);
}

/** True when some object under `prefix` sorts after `name`. */
async function hasNameAfter(bucket: Bucket, prefix: string, name: string, ctx: GcsErrorContext): Promise<boolean> {
  try {
    const [files] = await bucket.getFiles({ prefix, startOffset: name, maxResults: 2, autoPaginate: false });
    return files.some((f) => f.name !== name);
  } catch (e) {
    throw mapGcsError(e, ctx);
  }
}
