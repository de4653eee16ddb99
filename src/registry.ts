import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { InvalidConfigError } from './core/errors.js';
import type { BlobStore } from './core/types.js';

/**
 * Every provider folder's index exports `fromUrl(url, options)`. The registry maps URL schemes to
 * them and loads each lazily, so a user of one cloud never loads the other two SDKs.
 */
export type StoreFactory = (url: URL, options?: Record<string, unknown>) => BlobStore | Promise<BlobStore>;

const loaders: Record<string, () => Promise<StoreFactory>> = {
  'memory:': async () => (await import('../providers/memory/index.js')).fromUrl,
  'file:': async () => (await import('../providers/fs/index.js')).fromUrl,
  's3:': async () => (await import('../providers/s3/index.js')).fromUrl,
  'gs:': async () => (await import('../providers/gcs/index.js')).fromUrl,
  'az:': async () => (await import('../providers/azure/index.js')).fromUrl,
};

/** Registers a third-party driver for a URL scheme (e.g. `r2:`). */
export function registerScheme(scheme: string, factory: StoreFactory): void {
  const s = scheme.endsWith(':') ? scheme : `${scheme}:`;
  loaders[s] = async () => factory;
}

/**
 * Parses a store URL. Plain paths (`./data`, `/var/x`) are taken as `file://` URLs.
 * Throws InvalidConfig naming what is wrong, never echoing credentials embedded in the URL.
 */
export function parseStoreUrl(input: string): URL {
  if (!/^[a-z][a-z0-9+.-]*:/i.test(input) || /^[a-z]:[\\/]/i.test(input)) return pathToFileURL(resolve(input));
  try {
    return new URL(input);
  } catch {
    throw new InvalidConfigError(`not a valid store URL: ${redactUrl(input)}`);
  }
}

/** Opens a store from a URL such as `s3://bucket/prefix?region=eu-west-1`, `gs://b`, `az://acct/container`, `file:///dir`, `memory://`. */
export async function openStore(input: string | URL, options?: Record<string, unknown>): Promise<BlobStore> {
  const url = typeof input === 'string' ? parseStoreUrl(input) : input;
  const load = loaders[url.protocol];
  if (!load) throw new InvalidConfigError(`unknown store scheme ${url.protocol} in ${redactUrl(url.href)}; known: ${Object.keys(loaders).join(' ')}`);
  const factory = await load();
  return factory(url, options);
}

/** How many leading path segments of a URL name the store rather than the key (Azure: the container). */
const storeSegments: Record<string, number> = { 'az:': 1 };

/**
 * Splits an object URL into the store it lives in and its key: `s3://bucket/a/b.txt` →
 * (`s3://bucket`, `a/b.txt`); `az://acct/container/a/b` → (`az://acct/container`, `a/b`).
 * Query options stay with the store URL.
 */
export function splitObjectUrl(input: string | URL): { store: URL; key: string } {
  const url = typeof input === 'string' ? parseStoreUrl(input) : new URL(input.href);
  const segments = url.pathname.split('/').slice(1);
  const keep = storeSegments[url.protocol] ?? 0;
  const key = segments.slice(keep).map(decodeURIComponent).join('/');
  const store = new URL(url.href);
  store.pathname = keep > 0 ? `/${segments.slice(0, keep).join('/')}` : '/';
  return { store, key };
}

/** A URL safe to print: user info and secret-looking query parameters masked. */
export function redactUrl(input: string): string {
  try {
    const u = new URL(input);
    if (u.username) u.username = '***';
    if (u.password) u.password = '***';
    for (const k of [...u.searchParams.keys()]) {
      if (/secret|key|token|sig|password|credential/i.test(k)) u.searchParams.set(k, '***');
    }
    return u.href;
  } catch {
    return input.replace(/\/\/[^@/]*@/, '//***@').replace(/([?&][^=]*(secret|key|token|sig|password)[^=]*=)[^&]*/gi, '$1***');
  }
}
