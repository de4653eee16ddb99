import { InvalidConfigError } from './errors.js';

/**
 * The query of a store URL (`s3://bucket/prefix?partSize=16777216`): a name outside `known` is
 * refused, so a typo never falls back to a default silently, and values are typed as they are read.
 * Errors are InvalidConfig naming the provider.
 */
export class StoreUrlParams {
  private readonly query: URLSearchParams;

  constructor(url: URL, known: readonly string[], private readonly provider: string) {
    this.query = url.searchParams;
    for (const k of this.query.keys()) if (!known.includes(k)) this.fail(`unknown URL parameter ${JSON.stringify(k)}; known: ${known.join(', ')}`);
  }

  string(name: string): string | undefined {
    return this.query.get(name) ?? undefined;
  }

  /** `true`, `1` or empty (`?presign`) is true; `false` or `0` false. */
  bool(name: string): boolean | undefined {
    const v = this.query.get(name);
    if (v === null) return undefined;
    if (v === 'true' || v === '1' || v === '') return true;
    if (v === 'false' || v === '0') return false;
    return this.fail(`${name}: expected true/false, got ${JSON.stringify(v)}`);
  }

  int(name: string): number | undefined {
    const v = this.query.get(name);
    if (v === null) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n)) this.fail(`${name} must be an integer, got ${JSON.stringify(v)}`);
    return n;
  }

  private fail(message: string): never {
    throw new InvalidConfigError(`${this.provider}: ${message}`, { provider: this.provider });
  }
}

/** The bucket (host) and key prefix (path, without leading slashes) of a `scheme://bucket/prefix` URL. */
export function bucketAndPrefix(url: URL): { bucket: string; prefix: string } {
  return { bucket: url.hostname, prefix: decodeURIComponent(url.pathname.replace(/^\/+/, '')) };
}

/** `fromUrl` with every defined field of `explicit` laid over it: explicit options win over URL parameters. */
export function overlayDefined<T extends object>(fromUrl: T, explicit: Partial<T>): T {
  const merged: Record<string, unknown> = { ...(fromUrl as Record<string, unknown>) };
  for (const [k, v] of Object.entries(explicit)) if (v !== undefined) merged[k] = v;
  return merged as T;
}
