import { afterPrefix, rollup, throwIfAborted, validatePrefix } from '../core/index.js';
import type { ListItem, ListOptions, ObjectSummary } from '../core/index.js';
import { changeLimit, type Change, type ChangePage, type ChangesSinceOptions } from '../core/change-feed.js';
import type { StateStore } from '../state/types.js';
import { routerEtag } from './router-types.js';

// The router's views of the catalog: its listing and its change feed.

const PROVIDER = 'router';

/** The router's list (see {@link Router.list}): the catalog, in UTF-8 byte order. */
export async function* listCatalog(state: StateStore, opts: ListOptions = {}): AsyncGenerator<ListItem> {
  const prefix = opts.prefix ?? '';
  validatePrefix(prefix, PROVIDER);
  throwIfAborted(opts.signal, { provider: PROVIDER });
  const pageSize = Math.max(1, Math.min(opts.pageSize ?? 1000, 10_000));
  const delimiter = opts.delimiter;
  const signal = opts.signal;
  async function* objects(): AsyncGenerator<ObjectSummary> {
    let cursor = opts.startAfter;
    for (;;) {
      throwIfAborted(signal, { provider: 'router' });
      const page = await state.listObjects({ prefix, startAfter: cursor, limit: pageSize });
      for (const o of page) {
        yield { key: o.key, size: o.size, etag: routerEtag(o.version), lastModified: o.lastModified, version: String(o.version), checksums: o.sha256 ? { sha256: o.sha256 } : {} };
        cursor = o.key;
        if (delimiter) {
          const i = o.key.indexOf(delimiter, prefix.length);
          // rollup emits one prefix item per subtree: skip the rest of it instead of paging through.
          if (i >= 0) {
            cursor = afterPrefix(o.key.slice(0, i + delimiter.length));
            break;
          }
        }
      }
      if (page.length === 0) return;
      if (page.length < pageSize && cursor === page[page.length - 1]!.key) return;
    }
  }
  yield* rollup(objects(), prefix, delimiter);
}

/**
 * What changed in the catalog after `cursor` (contract: {@link ChangeFeed}): every put, metadata
 * update, adoption and delete, with the version, size, SHA-256 and etag reads will report.
 * Errors: InvalidArgument (cursor, limit), InvalidKey (prefix).
 */
export async function catalogChanges(state: StateStore, cursor: string | undefined, opts: ChangesSinceOptions = {}): Promise<ChangePage> {
  const limit = changeLimit(opts.limit, PROVIDER);
  if (opts.prefix) validatePrefix(opts.prefix, PROVIDER);
  throwIfAborted(opts.signal, { provider: PROVIDER });
  const page = await state.changesSince(cursor, { limit, ...(opts.prefix ? { prefix: opts.prefix } : {}) });
  return {
    ...page,
    changes: page.changes.map((c): Change => c.deleted
      ? { key: c.key, deleted: true, version: String(c.version) }
      : { key: c.key, deleted: false, version: String(c.version), size: c.size, etag: routerEtag(c.version), ...(c.sha256 ? { sha256: c.sha256 } : {}) }),
  };
}
