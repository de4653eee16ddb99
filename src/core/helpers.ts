import { collect } from './body.js';
import { isCloudmuxError } from './errors.js';
import type { BlobStore, Body, GetOptions, ListItem, ListOptions, ObjectMeta, ObjectSummary, PutOptions, SignalOptions } from './types.js';

/** Reads a whole object into memory. */
export async function getBuffer(store: BlobStore, key: string, opts?: GetOptions): Promise<Buffer> {
  const { body } = await store.get(key, opts);
  return collect(body);
}

/** Reads a whole object as UTF-8 text. */
export async function getText(store: BlobStore, key: string, opts?: GetOptions): Promise<string> {
  return (await getBuffer(store, key, opts)).toString('utf8');
}

/** What `pending` resolves to, or undefined when it fails with NotFound; any other failure is rethrown. */
export async function unlessNotFound<T>(pending: Promise<T>): Promise<T | undefined> {
  try {
    return await pending;
  } catch (e) {
    if (isCloudmuxError(e, 'NotFound')) return undefined;
    throw e;
  }
}

/** The object's meta (head), or undefined when there is no such object. */
export async function headIfExists(store: Pick<BlobStore, 'head'>, key: string, opts?: SignalOptions): Promise<ObjectMeta | undefined> {
  return unlessNotFound(store.head(key, opts));
}

/** True if the key exists (head succeeds), false on NotFound. */
export async function exists(store: BlobStore, key: string, opts?: SignalOptions): Promise<boolean> {
  return (await headIfExists(store, key, opts)) !== undefined;
}

/** What {@link putIfAbsent} did: `created` with the new object's meta, or not, because the key existed. */
export type PutIfAbsentResult = { created: true; meta: ObjectMeta } | { created: false; meta?: undefined };

/**
 * Creates the object only if the key is absent (`ifNoneMatch: '*'`). When the key already exists
 * nothing is written and the result says `created: false`; other failures throw. On a store without
 * conditional writes this throws NotSupported rather than risk an overwrite.
 */
export async function putIfAbsent(store: BlobStore, key: string, body: Body, opts?: Omit<PutOptions, 'ifNoneMatch' | 'ifMatch'>): Promise<PutIfAbsentResult> {
  try {
    return { created: true, meta: await store.put(key, body, { ...opts, ifNoneMatch: '*' }) };
  } catch (e) {
    if (isCloudmuxError(e, 'AlreadyExists')) return { created: false };
    throw e;
  }
}

/** Only the objects of a listing (no delimiter). */
export async function* listObjects(store: BlobStore, opts?: Omit<ListOptions, 'delimiter'>): AsyncGenerator<ObjectSummary> {
  for await (const item of store.list(opts)) if (item.type === 'object') yield stripType(item);
}

/** All items of a listing in an array. For tests and small listings. */
export async function listAll(store: BlobStore, opts?: ListOptions): Promise<ListItem[]> {
  const out: ListItem[] = [];
  for await (const item of store.list(opts)) out.push(item);
  return out;
}

function stripType(item: ListItem & { type: 'object' }): ObjectSummary {
  const { type: _type, ...rest } = item;
  return rest;
}
