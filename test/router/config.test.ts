import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { loadConfig, parseConfig, parseConfigText } from '../../src/config/load.js';
import { CloudmuxError } from '../../src/core/errors.js';
import { collect } from '../../src/core/body.js';
import { openRouter } from '../../src/router/open-router.js';
import { tempDir } from '../harness/emulator.js';

function problems(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CloudmuxError);
    expect((e as CloudmuxError).code).toBe('InvalidConfig');
    return (e as Error).message;
  }
  throw new Error('expected InvalidConfig');
}

describe('config', () => {
  it('loads the example config with list prices and env references resolved', async () => {
    const cfg = await loadConfig('config/cloudmux.example.yaml', { env: { AZURE_STORAGE_CONNECTION_STRING: 'UseDevelopmentStorage=true' } });
    expect(cfg.providers.map((p) => p.name)).toEqual(['aws', 'gcp', 'azure']);
    expect(cfg.providers[0]!.prices).toEqual({ storageGbMonth: 0.023, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004, egressInterRegionGb: 0.02 });
    expect(cfg.providers[1]!.prices.egressToGb).toEqual({ aws: 0.12 });
    expect(cfg.providers[2]!.prices.storageGbMonth).toBe(0.0208);
    expect(cfg.providers[2]!.options!.connectionString).toBe('UseDevelopmentStorage=true');
    expect(cfg.policies.find((p) => p.prefix === 'eu/')).toMatchObject({ pin: ['azure'], writeQuorum: 2, read: 'primary' });
  });

  it('every price in config/prices.yaml carries a source URL and a date', () => {
    const text = readFileSync('config/prices.yaml', 'utf8');
    for (const entry of ['s3-standard', 'gcs-standard', 'azure-hot']) {
      const block = text.split(`${entry}:`)[1]!.split(/\n\S/)[0]!;
      for (const field of ['storageGbMonth', 'egressInternetGb', 'classAPer1k', 'classBPer1k']) {
        expect(block).toMatch(new RegExp(`${field}: \\{ url: "https://[^"]+", note: "[^"]+", date: "\\d{4}-\\d{2}-\\d{2}" \\}`));
      }
    }
  });

  it('names the exact path and what was expected, for every problem at once', () => {
    const msg = problems(() => parseConfigText(`
providers:
  - name: a
    url: memory://a
    prices: { storageGbMonth: "cheap" }
  - name: a
    url: memory://b
policies:
  - prefix: ""
    replicas: 2
    writeQuorum: 3
    read: random
    pin: [nope]
`, { source: 'x.yaml' }));
    expect(msg).toContain('invalid x.yaml');
    expect(msg).toContain('providers[0].prices.storageGbMonth: expected number');
    expect(msg).toContain('policies[0].read: expected one of "cheapest" | "fastest" | "primary"');
    // Cross-field checks run once the shapes are right (zod refines only a well-typed object).
    const cross = problems(() => parseConfig({
      providers: [{ name: 'a', url: 'memory://a' }, { name: 'a', url: 'memory://b' }],
      policies: [{ prefix: '', replicas: 2, writeQuorum: 3, pin: ['nope'] }],
    }));
    expect(cross).toContain('providers[1].name: duplicate provider name "a"');
    expect(cross).toContain('policies[0].writeQuorum: writeQuorum 3 is more than replicas 2');
    expect(cross).toContain('policies[0].pin[0]: unknown provider "nope"');
    // The daemon's chunk GC names a provider and keeps at least an hour of grace.
    const gc = problems(() => parseConfig({
      providers: [{ name: 'a', url: 'memory://a' }],
      daemon: { chunkGc: [{ provider: 'b' }, { provider: 'a', graceMs: 1000, chunkPrefix: 'chunks' }] },
    }));
    expect(gc).toContain('daemon.chunkGc[1].graceMs');
    expect(gc).toContain('daemon.chunkGc[1].chunkPrefix: must end with /');
    const ok = parseConfig({ providers: [{ name: 'a', url: 'memory://a' }], daemon: { chunkGc: [{ provider: 'a' }] } });
    expect(ok.daemon.chunkGc).toEqual([{ provider: 'a', intervalMs: 86_400_000, graceMs: 86_400_000 }]);
    expect(problems(() => parseConfig({ providers: [{ name: 'a', url: 'memory://a' }], daemon: { chunkGc: [{ provider: 'b' }] } }))).toContain('daemon.chunkGc[0].provider: unknown provider "b"');
  });

  it('reads version 1 (or none) and refuses a newer config version by name, before looking at its keys', () => {
    const base = { providers: [{ name: 'm', url: 'memory://' }] };
    expect(parseConfig({ ...base, version: 1 }).providers).toHaveLength(1);
    expect(parseConfig(base).providers).toHaveLength(1);
    let err: unknown;
    try {
      parseConfig({ ...base, version: 2, somethingNew: true }, { source: 'cloudmux.yaml' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CloudmuxError);
    expect(err).toMatchObject({ code: 'InvalidConfig', message: 'cloudmux.yaml is config version 2, newer than this cloudmux understands (1); upgrade cloudmux' });
  });

  it('rejects literal secrets and unknown keys, and reports unset env vars by path', () => {
    const msg = problems(() => parseConfig({
      providers: [{ name: 'a', url: 'az://acct/c', options: { accountKey: 'c2VjcmV0', endpoint: '${AZ_ENDPOINT}' }, colour: 'blue' }],
      state: { postgres: { url: 'postgres://u:hunter2@db/x' } },
    }, { env: {} }));
    expect(msg).toContain('providers[0]: unknown key "colour"');
    const msg2 = problems(() => parseConfig({
      providers: [{ name: 'a', url: 'az://acct/c', options: { accountKey: 'c2VjcmV0', endpoint: '${AZ_ENDPOINT}' } }],
      state: { postgres: { url: 'postgres://u:hunter2@db/x' } },
    }, { env: {} }));
    expect(msg2).toContain('providers[0].options.accountKey: a secret must be an environment reference');
    expect(msg2).toContain('state.postgres.url: the password in a URL must be an environment reference');
    expect(msg2).toContain('providers[0].options.endpoint: environment variable AZ_ENDPOINT is not set');
    expect(msg2).not.toContain('hunter2');
    expect(msg2).not.toContain('c2VjcmV0');
  });

  it('fills defaults: one replica, cheapest reads, free prices for memory://', () => {
    const cfg = parseConfig({ providers: [{ name: 'm', url: 'memory://m' }] });
    expect(cfg.policies).toEqual([expect.objectContaining({ prefix: '', replicas: 1, writeQuorum: 1, read: 'cheapest' })]);
    expect(cfg.providers[0]!.prices.storageGbMonth).toBe(0);
  });

  describe('router.copyOnRead', () => {
    const prices = (storageGbMonth: number) => ({ storageGbMonth, egressInternetGb: 0.09, classAPer1k: 0.005, classBPer1k: 0.0004 });
    const providers = [
      { name: 'us', url: 'memory://us', location: 'aws:us-east-1', prices: prices(0.02) },
      { name: 'eu', url: 'memory://eu', location: 'gcp:europe-west1', prices: prices(0.023) },
    ];

    it('a config enables it: the router built from the config leaves a copy at its location on a remote read and serves later reads from it', async () => {
      const dir = await tempDir('config-cor');
      const cfg = parseConfig({
        providers, state: { sqlite: { path: `${dir.path}/state.db`, durability: 'normal' } },
        router: { location: 'gcp:europe-west1', copyOnRead: { ttl: 3600 } },
      });
      expect(cfg.router.copyOnRead).toEqual({ ttl: 3600 });
      const r = await openRouter(cfg);
      try {
        expect(r.copyOnRead?.cache).toBe('eu');
        await r.put('k', 'hello');
        const first = await r.get('k');
        expect((await collect(first.body)).toString()).toBe('hello');
        expect(first).toMatchObject({ provider: 'eu', cached: true });
        expect((await r.state.cachedCopies!.cachedCopies({ key: 'k' })).map((c) => c.provider)).toEqual(['eu']);
        expect(r.copyOnRead!.counters).toMatchObject({ created: 1 });
      } finally {
        await r.close();
        await dir.remove();
      }
      // `true` takes the defaults (TTL t-even); off unless asked for.
      expect(parseConfig({ providers, router: { location: 'eu', copyOnRead: true } }).router.copyOnRead).toEqual({ ttl: 't-even' });
      expect(parseConfig({ providers, router: { copyOnRead: false } }).router.copyOnRead).toBeUndefined();
      expect(parseConfig({ providers, router: { location: 'eu' } }).router.copyOnRead).toBeUndefined();
    });

    it('names the field of each mistake', () => {
      expect(problems(() => parseConfig({ providers, router: { copyOnRead: true } })))
        .toContain('router.copyOnRead: copy on read needs router.location');
      expect(problems(() => parseConfig({ providers, router: { location: 'gcp:europe-west1', copyOnRead: { cacheProvider: 'nope' } } })))
        .toContain('router.copyOnRead.cacheProvider: unknown provider "nope"; expected one of: us, eu');
      expect(problems(() => parseConfig({ providers, router: { location: 'azure:westeurope', copyOnRead: true } })))
        .toContain('router.copyOnRead: no provider is at azure:westeurope to take the copies');
      const ttl = problems(() => parseConfig({ providers, router: { location: 'eu', copyOnRead: { ttl: 'weekly' } } }));
      expect(ttl).toContain('router.copyOnRead.ttl: expected');
      expect(problems(() => parseConfig({ providers, router: { location: 'eu', copyOnRead: { ttl: 60, evict: true } } })))
        .toContain('router.copyOnRead: unknown key "evict"');
    });
  });
});

