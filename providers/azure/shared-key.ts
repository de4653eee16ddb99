import { createHmac } from 'node:crypto';

/**
 * Shared Key signing for the requests cloudmux sends itself (see data-client.ts), as Azure
 * specifies it: https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
 */

/** The standard headers of the string to sign, in the order Azure lists them. */
const STANDARD = ['content-encoding', 'content-language', 'content-length', 'content-md5', 'content-type', 'date', 'if-modified-since', 'if-match', 'if-none-match', 'if-unmodified-since', 'range'] as const;

/**
 * Azure sorts the x-ms-* headers with .NET's culture-aware comparison (the SDK imitates it with
 * en-US sort-key tables): `-` is ignored and `_` sorts before digits, digits before letters. For
 * the names cloudmux sends (lower case; metadata names are `[a-z][a-z0-9_]*`, so no two names are
 * equal once `-` is dropped) that is plain ordering of this key.
 */
function sortKey(name: string): string {
  let key = SORT_KEYS.get(name);
  if (key === undefined) {
    key = name.replaceAll('-', '').replaceAll('_', '/');
    // Header names repeat (metadata names too); the cache is bounded for callers that never repeat one.
    if (SORT_KEYS.size < 4096) SORT_KEYS.set(name, key);
  }
  return key;
}

const SORT_KEYS = new Map<string, string>();

const STANDARD_INDEX = new Map<string, number>(STANDARD.map((h, i) => [h, i]));

/**
 * The Authorization header for one request. `headers` is the flat `[name, value, name, value…]`
 * list of everything sent, names in lower case, x-ms-date included; `path` is the URL path exactly
 * as sent (percent-encoded); `query` holds the decoded query parameters.
 */
export function sharedKeyAuthorization(
  account: string, key: Buffer, method: string, path: string, query: readonly (readonly [string, string])[], headers: readonly string[],
): string {
  const standard: string[] = new Array<string>(STANDARD.length).fill('');
  const xms: [string, string, string][] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    if (name.startsWith('x-ms-')) {
      xms.push([sortKey(name), name, value]);
      continue;
    }
    const at = STANDARD_INDEX.get(name);
    // Since version 2015-02-21 a zero Content-Length is signed as empty.
    if (at !== undefined && !(name === 'content-length' && value === '0')) standard[at] = value;
  }
  xms.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  let s = `${method}\n${standard.join('\n')}\n`;
  for (const [, name, value] of xms) s += `${name}:${value.trimStart()}\n`;
  s += `/${account}${path}`;
  const sorted = query.map(([k, v]) => [k.toLowerCase(), v] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [k, v] of sorted) s += `\n${k}:${v}`;
  return `SharedKey ${account}:${createHmac('sha256', key).update(s, 'utf8').digest('base64')}`;
}
