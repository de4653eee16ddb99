import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format, inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureStore, resolveAzureConfig } from '../../providers/azure/index.js';
import { FsStore } from '../../providers/fs/index.js';
import { GcsStore } from '../../providers/gcs/index.js';
import { MemoryStore } from '../../providers/memory/index.js';
import { S3Store } from '../../providers/s3/index.js';
import { resolveOptions as resolveS3Options } from '../../providers/s3/config.js';
import { parseConfig } from '../../src/config/load.js';
import { isSecretName, redacted, redactString, type BlobStore } from '../../src/core/index.js';
import { ChainKeyring, EncryptedStore, KmsKeyring, LocalKeyring } from '../../src/layers/encryption/index.js';
import { resilient } from '../../src/layers/resilient.js';
import { Router } from '../../src/router/router.js';
import { PostgresStateStore } from '../../src/state/postgres.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';

/**
 * `console.log(store)` must never print a credential (issue 16 item 8): every driver, every layer
 * stack, the router, state stores, keyrings and config objects are built here with known fake
 * secrets, then printed every way a user or a logger might, and no secret may appear.
 */
const AZURE_KEY = Buffer.from('AZURE-ACCOUNT-KEY-0123456789-not-a-real-key').toString('base64');
const SECRETS = {
  s3Secret: 'S3-SECRET-ACCESS-KEY-fake-9f8e7d',
  s3Session: 'S3-SESSION-TOKEN-fake-1a2b3c',
  azureKey: AZURE_KEY,
  azureSig: 'AZSASSIGNATUREfake0123456789abcdef',
  gcsPrivateKey: 'GCS-PRIVATE-KEY-BODY-fake-55aa',
  pgPassword: 'PG-PASSWORD-fake-77',
  kekB64: Buffer.alloc(32, 0x5c).toString('base64'),
  kmsToken: 'KMS-TOKEN-fake-3141',
  envSecret: 'CONFIG-ENV-SECRET-fake-2718',
};
const SAS = `sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2099-01-01T00:00:00Z&sig=${SECRETS.azureSig}`;
const GCS_KEY = `-----BEGIN PRIVATE KEY-----\n${SECRETS.gcsPrivateKey}\n-----END PRIVATE KEY-----\n`;

/** Every way a store ends up as text: console.log, %o, deep inspect with hidden fields, JSON, String. */
function renderings(x: unknown, json: boolean): string[] {
  return [
    inspect(x),
    inspect(x, { depth: Infinity, showHidden: true, getters: true }),
    inspect(x, { depth: Infinity, showHidden: true, customInspect: true, showProxy: true }),
    format('%o', x),
    format('%O', x),
    format('%s', x),
    json ? JSON.stringify(x) ?? '' : '',
  ];
}

function expectNoSecret(name: string, x: unknown, json: boolean): void {
  for (const text of renderings(x, json)) {
    for (const [what, secret] of Object.entries(SECRETS)) {
      if (text.includes(secret)) throw new Error(`${name} printed ${what}:\n${text.slice(Math.max(0, text.indexOf(secret) - 400), text.indexOf(secret) + 100)}`);
    }
  }
}

let dir: string;
/**
 * `config`: a config object. Those print redacted but serialise as they are: JSON of a config is
 * data that code compares and passes on (the daemon compares state configs on reload), while a
 * store serialises as its name.
 */
const built: { name: string; value: unknown; config?: boolean; close?: () => Promise<void> }[] = [];

function s3(): S3Store {
  return new S3Store({
    bucket: 'redact-bkt', endpoint: 'http://127.0.0.1:9', region: 'us-east-1', forcePathStyle: true,
    credentials: { accessKeyId: 'AKIAFAKEFAKEFAKE', secretAccessKey: SECRETS.s3Secret, sessionToken: SECRETS.s3Session },
  });
}
function azureKey(): AzureStore {
  return new AzureStore(resolveAzureConfig(undefined, { account: 'redactacct', container: 'redact-ctr', endpoint: 'http://127.0.0.1:9/redactacct', accountKey: SECRETS.azureKey }, {}));
}
function azureSas(): AzureStore {
  return new AzureStore(resolveAzureConfig(undefined, { account: 'redactacct', container: 'redact-ctr', endpoint: 'http://127.0.0.1:9/redactacct', sasToken: `?${SAS}` }, {}));
}
function azureConnectionString(): AzureStore {
  const cs = `DefaultEndpointsProtocol=http;AccountName=redactacct;AccountKey=${SECRETS.azureKey};BlobEndpoint=http://127.0.0.1:9/redactacct;`;
  return new AzureStore(resolveAzureConfig(undefined, { container: 'redact-ctr', connectionString: cs }, {}));
}
function gcs(): GcsStore {
  return new GcsStore({
    bucket: 'redact-bkt', apiEndpoint: 'http://127.0.0.1:9', projectId: 'p', useAuthWithCustomEndpoint: true,
    credentials: { client_email: 'sa@p.iam.gserviceaccount.com', private_key: GCS_KEY },
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cloudmux-redact-'));
  const drivers: Record<string, () => BlobStore> = {
    s3, azureKey, azureSas, azureConnectionString, gcs,
    fs: () => new FsStore({ root: join(dir, 'fs') }),
    memory: () => new MemoryStore(),
  };
  const keyring = new ChainKeyring([
    new LocalKeyring({ k1: SECRETS.kekB64 }),
    new KmsKeyring({ has: async () => false, encrypt: async () => new Uint8Array(), decrypt: async () => new Uint8Array(), toString: () => 'fake-kms', token: SECRETS.kmsToken } as never),
  ]);
  for (const [name, make] of Object.entries(drivers)) {
    const driver = make();
    built.push({ name: `${name} driver`, value: driver, close: () => driver.close() });
    const stack = resilient(make(), {
      operationTimeoutMs: 60_000, attemptTimeout: { timeoutMs: 10_000 }, rateLimit: { opsPerSec: 1000 },
      retry: { retries: 2 }, breaker: {}, instrument: {},
    });
    built.push({ name: `resilient(${name}) stack object`, value: stack, close: () => stack.store.close() });
    built.push({ name: `resilient(${name}).store`, value: stack.store });
    const encrypted = new EncryptedStore(make(), { keyring, keyId: 'k1' });
    built.push({ name: `Encrypted(${name})`, value: encrypted, close: () => encrypted.close() });
  }
  const state = new SqliteStateStore({ path: join(dir, 'state.db') });
  const router = new Router({
    providers: [
      { name: 's3', store: resilient(s3()).store },
      { name: 'azure', store: resilient(azureSas()).store },
      { name: 'gcs', store: resilient(gcs()).store },
    ],
    state,
    policies: [{ replicas: 2, writeQuorum: 1 }],
  });
  built.push({ name: 'router', value: router, close: () => router.close() });
  built.push({ name: 'keyring', value: keyring });
  // Opening one needs a database; what it prints comes from its options alone.
  const pg = Object.assign(Object.create(PostgresStateStore.prototype) as object, {
    options: { url: `postgres://cloudmux:${SECRETS.pgPassword}@db.example:5432/cm`, schema: 'cloudmux' },
    pool: { options: { password: SECRETS.pgPassword } },
  });
  built.push({ name: 'postgres state store', value: pg });
  built.push({ name: 'resolved S3 options', value: resolveS3Options({ bucket: 'redact-bkt', credentials: { accessKeyId: 'AKIAFAKE', secretAccessKey: SECRETS.s3Secret } }), config: true });
  built.push({ name: 'Azure store config', value: azureKey().config, config: true });
  built.push({ name: 'Azure SAS config', value: azureSas().config, config: true });
  built.push({ name: 'GCS store options', value: gcs().options, config: true });
  const config = parseConfig({
    providers: [
      { name: 'a', url: 'az://redactacct/ctr', options: { accountKey: '${AK}', sasToken: '${SAS}', nested: { secretAccessKey: '${AK2}' } } },
      { name: 'g', url: 'gs://bkt', options: { credentials: { client_email: 'x@y', private_key: '${PK}' } } },
    ],
    state: { postgres: { url: 'postgres://u:${PGPASSWORD}@h/db' } },
    policies: [{ replicas: 1, writeQuorum: 1 }],
  }, { env: { AK: SECRETS.azureKey, SAS, AK2: SECRETS.envSecret, PK: GCS_KEY, PGPASSWORD: SECRETS.pgPassword } });
  built.push({ name: 'loaded config', value: config, config: true });
  built.push({ name: 'a provider of the loaded config', value: config.providers[0], config: true });
  built.push({ name: 'the loaded config\'s state', value: config.state, config: true });
});

afterAll(async () => {
  await Promise.allSettled(built.map((b) => b.close?.()));
  await rm(dir, { recursive: true, force: true });
});

describe('util.inspect, %o and JSON of stores, layers and configs show no secret', () => {
  it('every driver, layer stack, router, state store, keyring and config object', () => {
    expect(built.length).toBeGreaterThan(30);
    for (const b of built) expectNoSecret(b.name, b.value, !b.config);
  });

  it('still says what the thing is', () => {
    const stack = built.find((b) => b.name === 'resilient(s3).store')!.value;
    expect(inspect(stack)).toMatch(/^Timeout\(60000ms, Retry\(Breaker\(RateLimit\(.*s3:\/\/redact-bkt\/.*\)\)\)\)$/);
    expect(inspect(built.find((b) => b.name === 'router')!.value)).toContain('Router(s3=');
    const cfg = inspect(built.find((b) => b.name === 'Azure store config')!.value, { depth: Infinity });
    expect(cfg).toContain("container: 'redact-ctr'");
    expect(cfg).toContain("accountKey: '[redacted]'");
    const loaded = inspect(built.find((b) => b.name === 'loaded config')!.value, { depth: Infinity });
    expect(loaded).toContain("name: 'a'");
    expect(loaded).toContain('postgres://u:***@h/db');
  });

  it('leaves the values readable by code', () => {
    const config = built.find((b) => b.name === 'Azure store config')!.value as { auth: { accountKey: string } };
    expect(config.auth.accountKey).toBe(SECRETS.azureKey);
    expect(Object.keys(config)).not.toContain('toJSON');
  });
});

describe('the redaction rules', () => {
  it('names secrets by field name, and masks URLs and connection strings', () => {
    for (const n of ['secretAccessKey', 'accountKey', 'sasToken', 'connectionString', 'private_key', 'password', 'sessionToken', 'sig']) expect(isSecretName(n), n).toBe(true);
    for (const n of ['bucket', 'endpoint', 'keyId', 'region', 'container', 'signal']) expect(isSecretName(n), n).toBe(false);
    expect(redactString('https://a.blob.core.windows.net/c/k?sv=1&sig=abc%2F&se=2')).toBe('https://a.blob.core.windows.net/c/k?sv=1&sig=***&se=2');
    expect(redactString('postgres://u:pw@h/db')).toBe('postgres://u:***@h/db');
    expect(redactString('AccountName=a;AccountKey=xyz==;BlobEndpoint=http://h')).toBe('AccountName=a;AccountKey=***;BlobEndpoint=http://h');
    const cyclic: Record<string, unknown> = { token: 't' };
    cyclic.self = cyclic;
    expect(redacted(cyclic)).toEqual({ token: '[redacted]', self: '[Circular]' });
  });
});
