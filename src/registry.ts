import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { InvalidConfigError, InvalidKeyError } from './core/errors.js';
import { keyProblem } from './core/keys.js';
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

/** A store URL cut into its parts as typed, before any decoding. */
interface RawStoreUrl {
  scheme: string;
  authority: string;
  path: string;
  query: string | undefined;
}

const SCHEME = /^([a-z][a-z0-9+.-]*):/i;

/** `scheme://authority/path?query`: the query starts at the first `?`; a `#` is an ordinary character. */
function lex(input: string): RawStoreUrl | undefined {
  const m = SCHEME.exec(input);
  if (!m) return undefined;
  let rest: string;
  if (input.startsWith('//', m[0].length)) rest = input.slice(m[0].length + 2);
  // `file:/abs/path`, the short form RFC 8089 allows: no authority.
  else if (m[1]!.toLowerCase() === 'file' && input.startsWith('/', m[0].length)) rest = input.slice(m[0].length);
  else return undefined;
  const q = rest.indexOf('?');
  const beforeQuery = q < 0 ? rest : rest.slice(0, q);
  const slash = beforeQuery.indexOf('/');
  return {
    scheme: `${m[1]!.toLowerCase()}:`,
    authority: slash < 0 ? beforeQuery : beforeQuery.slice(0, slash),
    path: slash < 0 ? '' : beforeQuery.slice(slash),
    query: q < 0 ? undefined : rest.slice(q + 1),
  };
}

function badUrl(input: string, problem: string): Error {
  return new InvalidConfigError(`not a valid store URL: ${printable(input)}: ${problem}`);
}

/** A URL for one line of an error message: credentials masked, control characters escaped. */
function printable(input: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u001f\u007f]/.test(input) ? JSON.stringify(redactUrl(input)) : redactUrl(input);
}

/** The path percent-decoded once (`%20` → space, `%3F` → `?`, `%25` → `%`); a malformed escape is InvalidConfig naming the URL. */
function decodePath(input: string, path: string): string {
  const bad = /%(?![0-9a-f]{2})/i.exec(path);
  if (bad) throw badUrl(input, `malformed percent-escape ${JSON.stringify(path.slice(bad.index, bad.index + 3))} (write %25 for a literal %)`);
  try {
    return decodeURIComponent(path);
  } catch {
    throw badUrl(input, 'its percent-escapes are not valid UTF-8');
  }
}

/**
 * Parses a store URL. Plain paths (`./data`, `/var/x`) are taken as `file://` URLs.
 * Throws InvalidConfig naming what is wrong, never echoing credentials embedded in the URL.
 *
 * Store URLs are not parsed as web URLs, whose normalisation would change the key a user typed:
 * WHATWG `new URL` drops everything after `#`, strips tabs and newlines and resolves `.`, `..` and
 * `%2E%2E` segments. Here:
 * - the options (query) start at the first `?`; a `?` in a key is written `%3F`;
 * - `#` is an ordinary character of a key or path (as in `aws s3`), never a fragment;
 * - the path is percent-decoded exactly once; a malformed escape (`%zz`) is InvalidConfig;
 * - the path of a store URL (bucket prefix, key, Azure container) must follow the key rules
 *   (src/core/keys.ts; it may be empty or end with `/`): a `.` or `..` segment, `//`, a control
 *   character are InvalidKey, never rewritten;
 * - a file:// path is a local path (`..` resolves as the OS would), `#` and `%`-escapes as above;
 * - control characters in the host or options are InvalidConfig.
 * The URL returned encodes the path so that `decodeURIComponent(url.pathname)` gives it back as typed.
 */
export function parseStoreUrl(input: string): URL {
  if (!SCHEME.test(input) || /^[a-z]:[\\/]/i.test(input)) return pathToFileURL(resolve(input));
  const raw = lex(input);
  if (!raw) throw badUrl(input, 'expected scheme://…');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(raw.authority + (raw.query ?? ''))) throw badUrl(input, 'a control character in its host or options');
  if (raw.query?.includes('#')) throw badUrl(input, 'a # in its options (write %23)');
  const path = decodePath(input, raw.path);
  const query = raw.query !== undefined && raw.query !== '' ? `?${raw.query}` : '';
  if (raw.scheme === 'file:') {
    if (raw.authority !== '' && raw.authority !== 'localhost') throw badUrl(input, `file URLs name a local path; host ${raw.authority} is not supported`);
    if (!path.startsWith('/')) throw badUrl(input, 'expected file:///absolute/path');
    if (path.includes('\0')) throw badUrl(input, 'a NUL character in its path');
    const url = pathToFileURL(path);
    url.search = query;
    // pathToFileURL drops a trailing slash only for the root; keep what the user typed.
    return url;
  }
  const sub = path.replace(/^\//, '');
  if (sub !== '') {
    const problem = keyProblem(sub.endsWith('/') ? sub.slice(0, -1) : sub);
    if (problem || sub === '/') {
      throw new InvalidKeyError(`${printable(input)}: the path ${JSON.stringify(sub)} is not a valid key or prefix: ${problem ?? 'it is "/"'} (cloudmux writes the key you type; it never resolves . or .. or drops characters)`, { key: sub });
    }
  }
  const encoded = sub === '' ? raw.path.slice(0, 1) : `/${sub.split('/').map(encodeURIComponent).join('/')}`;
  try {
    return new URL(`${raw.scheme}//${raw.authority}${encoded}${query}`);
  } catch {
    throw badUrl(input, 'its host is not valid');
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
 * Query options stay with the store URL. A string is parsed by {@link parseStoreUrl}, so the key
 * is the one typed.
 */
export function splitObjectUrl(input: string | URL): { store: URL; key: string } {
  const url = typeof input === 'string' ? parseStoreUrl(input) : new URL(input.href);
  const segments = url.pathname.split('/').slice(1);
  const keep = storeSegments[url.protocol] ?? 0;
  let key: string;
  try {
    key = segments.slice(keep).map(decodeURIComponent).join('/');
  } catch {
    throw new InvalidConfigError(`not a valid store URL: ${redactUrl(url.href)}: malformed percent-escape`);
  }
  const store = new URL(url.href);
  store.pathname = keep > 0 ? `/${segments.slice(0, keep).join('/')}` : '/';
  return { store, key };
}

const SECRET_PARAM = /secret|key|token|sig|password|credential/i;

/** A URL safe to print: user info and secret-looking query parameters masked. */
export function redactUrl(input: string): string {
  const raw = lex(input);
  if (!raw) return input.replace(/\/\/[^@/]*@/, '//***@');
  const authority = raw.authority.replace(/^[^@]*@/, '***@');
  const query = raw.query === undefined ? '' : `?${raw.query.split('&').map((p) => {
    const eq = p.indexOf('=');
    return eq > 0 && SECRET_PARAM.test(p.slice(0, eq)) ? `${p.slice(0, eq)}=***` : p;
  }).join('&')}`;
  return `${raw.scheme}//${authority}${raw.path}${query}`;
}
