/**
 * What `util.inspect` (and so `console.log`) shows of cloudmux objects that hold credentials.
 *
 * Two rules, one place:
 * - a store, layer, state store or keyring prints as its `toString()` (which never carries a
 *   secret), so `console.log(store)` on any stack shows `Retry(Breaker(s3://bkt/))`, never the SDK
 *   client, its credentials or a SAS signature inside — see {@link redactInspection};
 * - a config object (resolved driver options, a loaded config file) prints as a copy whose
 *   secret-named fields read `[redacted]` and whose URLs have their passwords and signatures masked
 *   — see {@link redactOnInspect}. The object itself is not changed: code still reads the secret.
 *
 * Node finds the hook by its registered symbol, so this module needs no `node:util` import.
 */
export const INSPECT: unique symbol = Symbol.for('nodejs.util.inspect.custom') as never;

/** Field names that hold secrets, in config files, driver options and URL queries. */
export const SECRET_NAME = /secret|password|passwd|token|credential|connectionstring|accountkey|privatekey|private_key|sas|signature|^sig$/i;

export const REDACTED = '[redacted]';

/** True for a field name that holds a secret (`secretAccessKey`, `accountKey`, `sasToken`, `sig`…). */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

/** A string with URL passwords, SAS signatures and connection-string keys masked. */
export function redactString(s: string): string {
  return s
    .replace(/(\/\/[^/:@\s]*:)[^@/\s]+@/g, `$1***@`)
    .replace(/([?&;](?:sig|signature|[a-z_-]*(?:secret|token|password|credential|sas)[a-z_-]*)=)[^&;\s]*/gi, '$1***')
    .replace(/((?:^|;)\s*(?:AccountKey|SharedAccessSignature)=)[^;]*/gi, '$1***');
}

interface Printable {
  toString(): string;
}

/**
 * Makes instances of `cls` print as their `toString()` under `util.inspect`, at any depth and with
 * `showHidden`, and serialise to it in `JSON.stringify` (a store is not data). Called once per class,
 * right after its definition; subclasses inherit it.
 */
export function redactInspection(cls: { prototype: Printable }): void {
  for (const name of [INSPECT, 'toJSON'] as const) {
    Object.defineProperty(cls.prototype, name, {
      value: function printable(this: Printable): string {
        return this.toString();
      },
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
}

/**
 * Makes `util.inspect` print `obj` as {@link redacted} would; with `deep`, every plain object or
 * array under it too (for trees cloudmux built itself: never install on a caller's objects). The
 * hook is a non-enumerable property: spreading, `Object.keys` and equality do not see it, and the
 * values stay readable by code. Returns `obj`.
 */
export function redactOnInspect<T extends object>(obj: T, opts: { deep?: boolean } = {}): T {
  const seen = new WeakSet<object>();
  const install = (o: object): void => {
    if (seen.has(o) || !isPlain(o) || !Object.isExtensible(o)) return;
    seen.add(o);
    Object.defineProperty(o, INSPECT, {
      value: function inspectRedacted(this: object, _depth: number, options: object, inspect?: (v: unknown, o: object) => string): unknown {
        const copy = redacted(this);
        return inspect ? inspect(copy, options) : copy;
      },
      writable: true,
      configurable: true,
      enumerable: false,
    });
    if (opts.deep) for (const v of Object.values(o)) if (v && typeof v === 'object') install(v as object);
  };
  install(obj);
  return obj;
}

/**
 * A copy of `value` fit to print: secret-named fields `[redacted]`, strings through
 * {@link redactString}, objects of other classes shown only by class name unless they redact
 * themselves. Cycles print as `[Circular]`.
 */
export function redacted(value: unknown, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redactString(value);
  if (!value || typeof value !== 'object') return value;
  if (value instanceof Date || value instanceof RegExp) return value;
  if (seen.has(value)) return '[Circular]';
  const own = (value as { [INSPECT]?: unknown })[INSPECT];
  if (!isPlain(value)) {
    if (typeof own === 'function' && !isRedactHook(own)) return value;
    if (value instanceof URL) return redactString(value.href);
    return opaque(value);
  }
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => redacted(v, seen));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = v !== undefined && v !== null && v !== '' && isSecretName(k) ? REDACTED : redacted(v, seen);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

function isRedactHook(fn: unknown): boolean {
  return typeof fn === 'function' && fn.name === 'inspectRedacted';
}

function isPlain(o: object): boolean {
  if (Array.isArray(o)) return true;
  const proto: unknown = Object.getPrototypeOf(o);
  return proto === Object.prototype || proto === null;
}

/** Shown as `[S3Client]`: its fields may hold credentials. */
function opaque(o: object): object {
  const name = (o as { constructor?: { name?: string } }).constructor?.name ?? 'Object';
  return { [INSPECT]: () => `[${name}]` };
}
