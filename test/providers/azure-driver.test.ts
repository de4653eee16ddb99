import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import { Readable } from 'node:stream';
import { BlobServiceClient, ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureStore, createAzureStore, mapAzureError, parseConnectionString, resolveAzureConfig } from '../../providers/azure/index.js';
import { mergeServerOrder, utf8Order, type Named } from '../../providers/azure/list-order.js';
import { collect } from '../../src/core/body.js';
import { CloudmuxError, isRetryable } from '../../src/core/errors.js';
import { getBuffer, listAll } from '../../src/core/helpers.js';
import { compareKeys } from '../../src/core/keys.js';
import { rollup } from '../../src/core/listing.js';
import type { ListItem } from '../../src/core/types.js';
import { openStore } from '../../src/registry.js';
import { expectCode, generatedStream, pseudoRandomBytes, sha256Hex } from '../../src/testing/index.js';
import { FaultProxy } from '../faults/proxy.js';
import { AZURITE_ACCOUNT, AZURITE_KEY } from '../harness/azure.js';

const KEY = AZURITE_KEY;
const CS = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${KEY};BlobEndpoint=http://127.0.0.1:1/${AZURITE_ACCOUNT};`;

describe('azure config', () => {
  it('reads account, container and prefix from the URL, endpoint from the query', () => {
    const c = resolveAzureConfig(new URL('az://acct/box/some/deep/prefix/?endpoint=http://127.0.0.1:10000/acct'), { accountKey: 'a2V5' }, {});
    expect(c).toMatchObject({ account: 'acct', container: 'box', prefix: 'some/deep/prefix', endpoint: 'http://127.0.0.1:10000/acct' });
    expect(c.auth).toEqual({ kind: 'sharedKey', account: 'acct', accountKey: 'a2V5' });
  });

  it('defaults to the public endpoint and DefaultAzureCredential', () => {
    const c = resolveAzureConfig(new URL('az://acct/box'), {}, {});
    expect(c.endpoint).toBe('https://acct.blob.core.windows.net');
    expect(c.auth.kind).toBe('defaultCredential');
    expect(c.prefix).toBe('');
  });

  it('takes credentials in order: options, connection string, AZURE_STORAGE_KEY, SAS', () => {
    const url = new URL('az://devstoreaccount1/box');
    expect(resolveAzureConfig(url, { connectionString: CS }, {}).auth.kind).toBe('sharedKey');
    expect(resolveAzureConfig(url, {}, { AZURE_STORAGE_CONNECTION_STRING: CS }).endpoint).toBe(`http://127.0.0.1:1/${AZURITE_ACCOUNT}`);
    expect(resolveAzureConfig(url, {}, { AZURE_STORAGE_KEY: 'k' }).auth).toEqual({ kind: 'sharedKey', account: AZURITE_ACCOUNT, accountKey: 'k' });
    expect(resolveAzureConfig(url, {}, { AZURE_STORAGE_SAS_TOKEN: '?sv=1&sig=x' }).auth).toEqual({ kind: 'sas', sasToken: 'sv=1&sig=x' });
    expect(resolveAzureConfig(url, { sasToken: 'sv=2' }, { AZURE_STORAGE_CONNECTION_STRING: CS }).auth.kind).toBe('sas');
  });

  it('ignores an environment connection string for another account, rejects an explicit one', () => {
    const other = new URL('az://otheraccount/box');
    const c = resolveAzureConfig(other, {}, { AZURE_STORAGE_CONNECTION_STRING: CS });
    expect(c.endpoint).toBe('https://otheraccount.blob.core.windows.net');
    expect(c.auth.kind).toBe('defaultCredential');
    expect(() => resolveAzureConfig(other, { connectionString: CS }, {})).toThrow(/connection string is for account devstoreaccount1/);
  });

  it('parses connection strings, including UseDevelopmentStorage and EndpointSuffix', () => {
    expect(parseConnectionString('UseDevelopmentStorage=true').blobEndpoint).toBe('http://127.0.0.1:10000/devstoreaccount1');
    expect(parseConnectionString('AccountName=x;AccountKey=a==;EndpointSuffix=core.chinacloudapi.cn')).toEqual({
      accountName: 'x', accountKey: 'a==', blobEndpoint: 'https://x.blob.core.chinacloudapi.cn',
    });
    expect(parseConnectionString('BlobEndpoint=https://x.example/;SharedAccessSignature=sv=1&sig=abc')).toEqual({
      blobEndpoint: 'https://x.example/', sharedAccessSignature: 'sv=1&sig=abc',
    });
  });

  it('refuses credentials in the URL and bad names, without echoing secrets', () => {
    expect(() => resolveAzureConfig(new URL('az://acct/box?sig=supersecret'), {}, {})).toThrow(/unknown az:\/\/ URL parameter "sig"/);
    try {
      resolveAzureConfig(new URL('az://user:supersecret@acct/box'), {}, {});
      expect.unreachable();
    } catch (e) {
      expect((e as CloudmuxError).code).toBe('InvalidConfig');
      expect(String(e)).not.toContain('supersecret');
    }
    expect(() => resolveAzureConfig(new URL('az://acct/Bad_Name'), {}, {})).toThrow(/invalid Azure container name/);
    expect(() => resolveAzureConfig(new URL('az://acct'), {}, {})).toThrow(/needs a container/);
    expect(() => resolveAzureConfig(new URL('az://acct/box'), { blockSize: 0 }, {})).toThrow(/blockSize/);
  });

  it('builds a store without loading a credential and prints no secret', () => {
    const s = createAzureStore({ connectionString: CS, container: 'box', prefix: 'p' });
    expect(s.toString()).toBe(`az://${AZURITE_ACCOUNT}/box/p?endpoint=http://127.0.0.1:1/${AZURITE_ACCOUNT}`);
    expect(s.toString()).not.toContain(KEY);
    expect(s.capabilities).toMatchObject({ conditionalPut: true, presign: true, streaming: true, nativeChecksums: ['md5'] });
    const viaDefault = new AzureStore(resolveAzureConfig(new URL('az://acct/box'), {}, {}));
    expect(viaDefault.capabilities.presign).toBe(false);
    expect(viaDefault.toString()).toBe('az://acct/box');
  });
});

describe('azure error mapping', () => {
  const rest = (statusCode: number | undefined, code?: string, message = 'm', extra: Record<string, unknown> = {}): unknown => ({ name: 'RestError', statusCode, code, message, details: { errorCode: code }, ...extra });
  const cases: [unknown, string, boolean][] = [
    [rest(404, 'BlobNotFound'), 'NotFound', false],
    [rest(404, 'ContainerNotFound'), 'InvalidConfig', false],
    [rest(412, 'ConditionNotMet'), 'PreconditionFailed', false],
    [rest(304, 'ConditionNotMet'), 'NotModified', false],
    [rest(412, 'SourceConditionNotMet'), 'PreconditionFailed', false],
    [rest(409, 'BlobAlreadyExists'), 'AlreadyExists', false],
    [rest(403, 'AuthenticationFailed'), 'AuthFailed', false],
    [rest(403, 'AuthorizationFailure', 'This request is not authorized to perform this operation.'), 'AccessDenied', false],
    [rest(403, 'AuthorizationFailure', 'Server failed to authenticate the request.'), 'AuthFailed', false],
    [rest(403, 'AuthorizationPermissionMismatch'), 'AccessDenied', false],
    [rest(503, 'ServerBusy'), 'Throttled', true],
    [rest(500, 'OperationTimedOut'), 'Transient', true],
    [rest(500, 'InternalError'), 'Transient', true],
    [rest(502), 'Transient', true],
    [rest(429), 'Throttled', true],
    [rest(416, 'InvalidRange'), 'InvalidRange', false],
    [rest(400, 'Md5Mismatch'), 'IntegrityError', false],
    [rest(400, 'InvalidOperation', "Provided contentMD5 doesn't match."), 'IntegrityError', false],
    [rest(400, 'InvalidBlockList'), 'Transient', true],
    [rest(400, 'InvalidMetadata'), 'InvalidArgument', false],
    [rest(400, 'SomethingElse'), 'ProviderError', false],
    [rest(undefined, 'REQUEST_SEND_ERROR', 'socket hang up'), 'Transient', true],
    [Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'Transient', true],
    [new Error('Data corruption failure: received less data than required and reached maxRetires limitation.'), 'Transient', true],
    [Object.assign(new Error('The operation was aborted.'), { name: 'AbortError' }), 'Transient', true],
  ];
  it.each(cases)('%# maps to %s', (input, code, retryable) => {
    const e = mapAzureError(input, { key: 'k', container: 'box', account: 'acct' });
    expect(e).toBeInstanceOf(CloudmuxError);
    expect(e.code).toBe(code);
    expect(isRetryable(e)).toBe(retryable);
    expect(e.provider).toBe('azure');
  });

  it('names the missing container and keeps Retry-After', () => {
    expect(mapAzureError(rest(404, 'ContainerNotFound'), { key: 'k', container: 'box', account: 'acct' }).message).toBe('container box does not exist in account acct');
    const headers = { get: (n: string) => (n === 'retry-after' ? '3' : undefined) };
    expect(mapAzureError(rest(503, 'ServerBusy', 'busy', { response: { headers } })).retryAfterMs).toBe(3000);
  });

  it('an AbortError is Aborted only when the caller aborted; otherwise it is a cut connection (Transient)', () => {
    const abort = Object.assign(new Error('The operation was aborted.'), { name: 'AbortError' });
    expect(mapAzureError(abort, { key: 'k', signal: AbortSignal.abort() }).code).toBe('Aborted');
    expect(mapAzureError(abort, { key: 'k', signal: new AbortController().signal }).code).toBe('Transient');
  });

  it('never carries a SAS or key from the SDK error into the message or cause', () => {
    const leaky = rest(403, 'AuthenticationFailed', `Signature did not match. url=https://a.blob.core.windows.net/c/k?sv=2024&sig=SECRETSIG AccountKey=${KEY}`, {
      request: { url: 'https://a.blob.core.windows.net/c/k?sig=SECRETSIG', headers: { authorization: `SharedKey a:SECRETSIG` } },
    });
    const e = mapAzureError(leaky, { key: 'k' });
    const everything = JSON.stringify({ m: e.message, s: String(e), c: String(e.cause), cm: (e.cause as Error).message, cause: e.cause });
    expect(everything).not.toContain('SECRETSIG');
    expect(everything).not.toContain(KEY);
    expect((e.cause as { request?: unknown }).request).toBeUndefined();
  });
});

/** A fake server: lists `names` under a prefix in UTF-16 order, rolling up at `delimiter` like Azure. */
function fakeServer(names: string[], delimiter?: string): { open: (p: string) => AsyncIterator<Named & { prefix?: boolean }>; opened: string[] } {
  const opened: string[] = [];
  const open = (p: string): AsyncIterator<Named & { prefix?: boolean }> => {
    opened.push(p);
    const out = new Map<string, boolean>();
    for (const n of names) {
      if (!n.startsWith(p)) continue;
      const i = delimiter ? n.indexOf(delimiter, p.length) : -1;
      if (i >= 0) out.set(n.slice(0, i + delimiter!.length), true);
      else out.set(n, false);
    }
    const sorted = [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, prefix]) => ({ name, prefix }));
    return (async function* () {
      yield* sorted;
    })();
  };
  return { open, opened };
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('azure list order (UTF-16 server order to UTF-8 byte order)', () => {
  const alphabet = ['a', 'b', '/', '~', '\u00e9', '\ud7ff', '\ue000', '\uff5e', '\ufffd', '\u{10000}', '\u{1f600}', '\u{10fffd}'];
  const nameArb = fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 5 }).map((cs) => cs.join(''));

  it('emits UTF-8 order for any names, with or without holding back, flat and rolled up', async () => {
    await fc.assert(fc.asyncProperty(fc.uniqueArray(nameArb, { maxLength: 40 }), fc.constantFrom(1, 2, 10_000), fc.boolean(), async (names, limit, delimited) => {
      const delimiter = delimited ? '/' : undefined;
      const { open } = fakeServer(names, delimiter);
      const got = (await drain(utf8Order(open, '', limit))).map((e) => e.name);
      const expected = (await drain(rollup([...names].sort(compareKeys).map((key) => ({ key, size: 0, etag: '', lastModified: new Date(0) })), '', delimiter)))
        .map((i: ListItem) => (i.type === 'object' ? i.key : i.prefix));
      expect(got).toEqual(expected);
    }), { numRuns: 300 });
  });

  it('holds back a small surrogate group instead of re-listing, and re-lists a large one', async () => {
    const names = ['x\u{1f600}1', 'x\u{1f600}2', 'x\u{1f600}3', 'x\uff5e', 'y'];
    const held = fakeServer(names);
    expect((await drain(utf8Order(held.open, '', 100))).map((e) => e.name)).toEqual(['x\uff5e', 'x\u{1f600}1', 'x\u{1f600}2', 'x\u{1f600}3', 'y']);
    expect(held.opened).toEqual(['']);
    const relisted = fakeServer(names);
    expect((await drain(utf8Order(relisted.open, '', 2))).map((e) => e.name)).toEqual(['x\uff5e', 'x\u{1f600}1', 'x\u{1f600}2', 'x\u{1f600}3', 'y']);
    expect(relisted.opened).toEqual(['', 'x']);
  });

  it('merges a hierarchy page (prefixes and blobs arrive apart) into server order', () => {
    const merged = mergeServerOrder([{ name: 'd/a' }, { name: 'd/c' }], [{ name: 'd/b/' }, { name: 'd/e/' }]);
    expect(merged.map((e) => e.name)).toEqual(['d/a', 'd/b/', 'd/c', 'd/e/']);
  });
});

const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
const containerName = process.env.AZURE_CONTAINER ?? 'cloudmux-test';

describe.runIf(connectionString)('azure driver on the harness endpoint', () => {
  const run = `driver-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const MiB = 1024 * 1024;
  let store: AzureStore;
  let container: ReturnType<BlobServiceClient['getContainerClient']>;

  beforeAll(() => {
    store = createAzureStore({ connectionString, container: containerName, prefix: run, blockSize: MiB, singleShotThreshold: MiB });
    container = BlobServiceClient.fromConnectionString(connectionString!).getContainerClient(containerName);
  });

  afterAll(async () => {
    for await (const b of container.listBlobsFlat({ prefix: `${run}/` })) await container.deleteBlob(b.name).catch(() => undefined);
  });

  it('stages a streamed body as blocks with per-block MD5, then commits Content-MD5 and cloudmux_sha256', async () => {
    const gen = generatedStream(3 * MiB + 123, { seed: 'staged', chunkSize: 100_000 });
    const meta = await store.put('staged/obj', gen.stream, { contentType: 'application/x-staged', metadata: { owner: 'me' } });
    const blob = container.getBlockBlobClient(`${run}/staged/obj`);
    const list = await blob.getBlockList('all');
    expect(list.committedBlocks?.map((b) => b.size)).toEqual([MiB, MiB, MiB, 123]);
    expect(list.uncommittedBlocks ?? []).toEqual([]);
    const props = await blob.getProperties();
    const data = await getBuffer(store, 'staged/obj', { verify: true });
    expect(Buffer.from(props.contentMD5!).toString('hex')).toBe(createHash('md5').update(data).digest('hex'));
    expect(props.metadata).toEqual({ owner: 'me', cloudmux_sha256: gen.sha256() });
    expect(props.contentType).toBe('application/x-staged');
    expect(meta).toMatchObject({ size: 3 * MiB + 123, etag: props.etag!.replaceAll('"', ''), checksums: { sha256: gen.sha256(), md5: Buffer.from(props.contentMD5!).toString('hex') } });
  });

  it('blockMd5: staged blocks carry a transactional MD5 over http (auto) or when asked; never sends none, and the blob still verifies', async () => {
    const blobEndpoint = process.env.AZURITE_BLOB_ENDPOINT;
    if (!blobEndpoint) return; // a preset connection string (docker-compose, real Azure): the proxy needs the emulator's address
    const upstream = new URL(blobEndpoint);
    const md5OfBlocks: (string | undefined)[] = [];
    const proxy = await FaultProxy.start({
      upstream: upstream.origin,
      decide: (req) => {
        if (req.method === 'PUT' && /[?&]comp=block(&|$)/.test(req.path)) md5OfBlocks.push(req.headers['content-md5'] as string | undefined);
        return null;
      },
    });
    const through = (blockMd5?: 'auto' | 'always' | 'never'): AzureStore => createAzureStore({
      connectionString, endpoint: `${proxy.url}${upstream.pathname.replace(/\/+$/, '')}`, container: containerName,
      prefix: `${run}/block-md5`, blockSize: MiB, singleShotThreshold: MiB, ...(blockMd5 ? { blockMd5 } : {})
    });
    try {
      const data = pseudoRandomBytes(2 * MiB + 5, 'block-md5');
      for (const [mode, sent] of [[undefined, true], ['always', true], ['never', false]] as const) {
        md5OfBlocks.length = 0;
        const s = through(mode);
        try {
          const meta = await s.put(`obj-${mode ?? 'auto'}`, Readable.from([data.subarray(0, MiB), data.subarray(MiB)]));
          expect(meta.checksums.sha256).toBe(sha256Hex(data));
          expect(sha256Hex(await getBuffer(s, `obj-${mode ?? 'auto'}`, { verify: true }))).toBe(sha256Hex(data));
          // Resumable uploads (migrate's large objects) follow the same rule.
          const h = await s.startUpload(`res-${mode ?? 'auto'}`, { size: data.byteLength, partSize: MiB });
          await s.uploadPart(h, 1, data.subarray(0, MiB));
          expect(md5OfBlocks).toHaveLength(4);
          for (const m of md5OfBlocks) expect(m !== undefined, `${mode ?? 'auto'}: ${String(m)}`).toBe(sent);
          if (sent) expect(md5OfBlocks[0]).toBe(createHash('md5').update(data.subarray(0, MiB)).digest('base64'));
        } finally {
          await s.close();
        }
      }
    } finally {
      await proxy.close();
    }
    // The rule itself: auto is on over http, off over https; a bad value is InvalidConfig.
    const cfg = (endpoint: string, blockMd5?: string): ReturnType<typeof resolveAzureConfig> =>
      resolveAzureConfig(undefined, { endpoint, accountKey: AZURITE_KEY, account: AZURITE_ACCOUNT, container: 'ccc', ...(blockMd5 ? { blockMd5: blockMd5 as 'auto' } : {}) }, {});
    expect(cfg('http://127.0.0.1:1/devstoreaccount1').blockMd5).toBe(true);
    expect(cfg('https://acct.blob.core.windows.net').blockMd5).toBe(false);
    expect(cfg('https://acct.blob.core.windows.net', 'always').blockMd5).toBe(true);
    expect(cfg('http://127.0.0.1:1/devstoreaccount1', 'never').blockMd5).toBe(false);
    expect(() => cfg('https://acct.blob.core.windows.net', 'sometimes')).toThrow(/blockMd5 must be auto, always or never/);
  });

  it('uploadPart sends the block MD5 it is handed (Azure checks it: a wrong one is refused) and takes parts in shared memory', async () => {
    expect(store.partDigests).toEqual(['md5']); // over http
    const data = pseudoRandomBytes(2 * MiB, 'handed-block-md5');
    const shared = Buffer.from(new SharedArrayBuffer(MiB));
    data.copy(shared, 0, 0, MiB);
    const h = await store.startUpload('handed-block-md5/obj', { size: data.byteLength, partSize: MiB });
    const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');
    await expectCode(store.uploadPart(h, 1, shared, { checksums: { md5: md5(data.subarray(MiB)) } }), 'IntegrityError');
    const p1 = await store.uploadPart(h, 1, shared, { checksums: { md5: md5(shared) } });
    const p2 = await store.uploadPart(h, 2, data.subarray(MiB));
    await store.completeUpload(h, [p1, p2], { checksums: { sha256: sha256Hex(data) } });
    expect(sha256Hex(await getBuffer(store, 'handed-block-md5/obj', { verify: true }))).toBe(sha256Hex(data));
  });

  it('puts a small stream in one Put Blob (no blocks staged)', async () => {
    await store.put('small/obj', (async function* () {
      yield Buffer.from('tiny ');
      yield Buffer.from('body');
    })());
    const list = await container.getBlockBlobClient(`${run}/small/obj`).getBlockList('all');
    expect(list.committedBlocks ?? []).toEqual([]);
    expect((await getBuffer(store, 'small/obj')).toString()).toBe('tiny body');
  });

  it('a failing staged upload commits nothing: the old object stays', async () => {
    await store.put('fail/obj', 'old');
    async function* failing(): AsyncGenerator<Buffer> {
      yield pseudoRandomBytes(MiB, 'a');
      yield pseudoRandomBytes(MiB, 'b');
      yield pseudoRandomBytes(MiB, 'c');
      throw new Error('source went away');
    }
    await expect(store.put('fail/obj', failing())).rejects.toThrow(/source went away/);
    expect((await getBuffer(store, 'fail/obj')).toString()).toBe('old');
    const list = await container.getBlockBlobClient(`${run}/fail/obj`).getBlockList('all');
    expect(list.committedBlocks ?? []).toEqual([]);
  });

  it('a staged put checks `expect` before committing', async () => {
    const gen = generatedStream(2 * MiB + 1, { seed: 'expect' });
    await expectCode(store.put('expect/obj', gen.stream, { expect: { sha256: sha256Hex('other') } }), 'IntegrityError');
    await expectCode(store.head('expect/obj'), 'NotFound');
  });

  it('an MD5 handed over in `expect` is what Azure checks the bytes against, not computed again', async () => {
    const md5 = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');
    const body = pseudoRandomBytes(200_000, 'handed-md5');
    // Single shot: Azure checks the handed-over MD5 on arrival; a right one is recorded as Content-MD5.
    const meta = await store.put('md5-given/ok', body, { expect: { md5: md5(body).toUpperCase() } });
    expect(meta.checksums).toMatchObject({ md5: md5(body), sha256: sha256Hex(body) });
    const props = await container.getBlockBlobClient(`${run}/md5-given/ok`).getProperties();
    expect(Buffer.from(props.contentMD5!).toString('hex')).toBe(md5(body));
    // A wrong one is refused by Azure before anything is written, with or without a SHA-256 beside it.
    await expectCode(store.put('md5-given/bad', body, { expect: { md5: md5('other') } }), 'IntegrityError');
    await expectCode(store.put('md5-given/bad', body, { expect: { md5: md5('other'), sha256: sha256Hex(body) } }), 'IntegrityError');
    await expectCode(store.head('md5-given/bad'), 'NotFound');
    // Staged: with the SHA-256 beside it, the handed-over MD5 becomes the blob's Content-MD5 (each
    // block still carries its own); without one, the MD5 is computed and a wrong one refused.
    const gen = generatedStream(2 * MiB + 5, { seed: 'handed-staged' });
    const big = await collect(generatedStream(2 * MiB + 5, { seed: 'handed-staged' }).stream);
    const staged = await store.put('md5-given/staged', gen.stream, { expect: { sha256: sha256Hex(big), md5: md5(big) } });
    expect(staged.checksums).toMatchObject({ md5: md5(big), sha256: sha256Hex(big) });
    expect(Buffer.from((await container.getBlockBlobClient(`${run}/md5-given/staged`).getProperties()).contentMD5!).toString('hex')).toBe(md5(big));
    await expectCode(store.put('md5-given/staged-bad', generatedStream(2 * MiB + 5, { seed: 'handed-staged' }).stream, { expect: { md5: md5('other') } }), 'IntegrityError');
    await expectCode(store.head('md5-given/staged-bad'), 'NotFound');
  });

  it('staged conditional puts fail fast and atomically', async () => {
    const first = await store.put('cond/obj', generatedStream(2 * MiB, { seed: 'c1' }).stream, { ifNoneMatch: '*' });
    await expectCode(store.put('cond/obj', generatedStream(2 * MiB, { seed: 'c2' }).stream, { ifNoneMatch: '*' }), 'AlreadyExists');
    const second = await store.put('cond/obj', generatedStream(2 * MiB, { seed: 'c3' }).stream, { ifMatch: first.etag });
    await expectCode(store.put('cond/obj', generatedStream(2 * MiB, { seed: 'c4' }).stream, { ifMatch: first.etag }), 'PreconditionFailed');
    await expectCode(store.put('cond/absent', generatedStream(2 * MiB, { seed: 'c5' }).stream, { ifMatch: first.etag }), 'NotFound');
    expect((await store.head('cond/obj')).etag).toBe(second.etag);
  });

  it('two concurrent staged puts of one key: each succeeds or fails retryably, and the object is one whole body', async () => {
    const a = pseudoRandomBytes(3 * MiB, 'writer-a');
    const b = pseudoRandomBytes(3 * MiB, 'writer-b');
    const chunked = (buf: Buffer): AsyncIterable<Buffer> => (async function* () {
      for (let i = 0; i < buf.length; i += 256 * 1024) yield buf.subarray(i, i + 256 * 1024);
    })();
    const results = await Promise.allSettled([store.put('race/obj', chunked(a)), store.put('race/obj', chunked(b))]);
    expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
    for (const r of results) if (r.status === 'rejected') expect(isRetryable(r.reason), String(r.reason)).toBe(true);
    const got = await getBuffer(store, 'race/obj', { verify: true });
    expect(got.equals(a) || got.equals(b)).toBe(true);
  });

  it('lists non-BMP keys in UTF-8 order through the real server, re-listing when the hold-back buffer is tiny', async () => {
    const names = ['n/x\u{1f600}1', 'n/x\u{1f600}2', 'n/x\u{1f600}3/deep', 'n/x\uff5e', 'n/x\uff5e/deep', 'n/x\ue000', 'n/xa', 'n/y'];
    for (const n of names) await store.put(n, n);
    const byteOrder = [...names].sort((p, q) => Buffer.compare(Buffer.from(p), Buffer.from(q)));
    const tiny = createAzureStore({ connectionString, container: containerName, prefix: run, listReorderBuffer: 1 });
    for (const s of [store, tiny]) {
      expect((await listAll(s, { prefix: 'n/', pageSize: 2 })).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(byteOrder);
      const rolled = (await listAll(s, { prefix: 'n/', delimiter: '/', pageSize: 2 })).map((i) => `${i.type}:${i.type === 'object' ? i.key : i.prefix}`);
      expect(rolled).toEqual(['object:n/xa', 'object:n/x\ue000', 'object:n/x\uff5e', 'prefix:n/x\uff5e/', 'object:n/x\u{1f600}1', 'object:n/x\u{1f600}2', 'prefix:n/x\u{1f600}3/', 'object:n/y']);
      const after = (await listAll(s, { prefix: 'n/', startAfter: 'n/x\uff5e/deep' })).map((i) => (i.type === 'object' ? i.key : i.prefix));
      expect(after).toEqual(byteOrder.slice(byteOrder.indexOf('n/x\uff5e/deep') + 1));
    }
  });

  it('startAfter inside a rolled-up prefix keeps the prefix only if it still holds later keys', async () => {
    for (const n of ['s/a/1', 's/a/2', 's/b/1', 's/c']) await store.put(n, n);
    const names = async (startAfter: string): Promise<string[]> => (await listAll(store, { prefix: 's/', delimiter: '/', startAfter })).map((i) => (i.type === 'object' ? i.key : i.prefix));
    expect(await names('s/a/1')).toEqual(['s/a/', 's/b/', 's/c']);
    expect(await names('s/a/2')).toEqual(['s/b/', 's/c']);
    expect(await names('s/a/')).toEqual(['s/a/', 's/b/', 's/c']);
    expect(await names('s/b')).toEqual(['s/b/', 's/c']);
  });

  it('deleteMany uses blob batches of 256 (300 keys), missing keys count as deleted', async () => {
    const keys = Array.from({ length: 300 }, (_, i) => `many/${String(i).padStart(3, '0')}`);
    let i = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (i < keys.length) await store.put(keys[i++]!, 'x');
    }));
    const res = await store.deleteMany([...keys, 'many/missing']);
    expect(res.errors).toEqual([]);
    expect(res.deleted.length).toBe(301);
    expect(await listAll(store, { prefix: 'many/' })).toEqual([]);
  });

  it('works with a SAS token: read/write/list, parallel deletes, no presign', async () => {
    const parsed = parseConnectionString(connectionString!);
    const sas = generateBlobSASQueryParameters({
      containerName,
      permissions: ContainerSASPermissions.parse('racwdl'),
      expiresOn: new Date(Date.now() + 3600_000),
    }, new StorageSharedKeyCredential(parsed.accountName!, parsed.accountKey!)).toString();
    const viaSas = createAzureStore({ sasToken: sas, account: parsed.accountName, endpoint: parsed.blobEndpoint, container: containerName, prefix: `${run}/sas` });
    expect(viaSas.capabilities.presign).toBe(false);
    await expectCode(viaSas.presign('k', { method: 'GET', expiresIn: 60 }), 'NotSupported');
    await viaSas.put('a', 'A');
    await viaSas.put('b', generatedStream(2 * MiB, { seed: 'sas' }).stream);
    expect((await getBuffer(viaSas, 'a')).toString()).toBe('A');
    expect((await listAll(viaSas)).map((i) => (i.type === 'object' ? i.key : i.prefix))).toEqual(['a', 'b']);
    const res = await viaSas.deleteMany(['a', 'b', 'c']);
    expect(res).toEqual({ deleted: expect.arrayContaining(['a', 'b', 'c']), errors: [] });
    expect(String(viaSas)).not.toContain('sig=');
  });

  it('a missing container is InvalidConfig naming it; a wrong key is AuthFailed; neither leaks the key', async () => {
    const missing = createAzureStore({ connectionString, container: 'no-such-container' });
    const e1 = await expectCode(missing.put('k', 'x'), 'InvalidConfig');
    expect(e1.message).toContain('no-such-container');
    await expectCode(missing.head('k'), 'InvalidConfig');
    const parsed = parseConnectionString(connectionString!);
    const wrongKey = Buffer.from(randomBytes(64)).toString('base64');
    const bad = createAzureStore({ accountKey: wrongKey, account: parsed.accountName, endpoint: parsed.blobEndpoint, container: containerName });
    // A HEAD answer has no body; Azurite then says only AuthorizationFailure (Azure: AuthenticationFailed).
    const e2 = await bad.head('k').then(() => expect.unreachable(), (e: CloudmuxError) => e);
    expect(e2.code).toMatch(/^(AuthFailed|AccessDenied)$/);
    const e3 = await expectCode(listAll(bad), 'AuthFailed');
    for (const e of [e1, e2, e3]) {
      const text = JSON.stringify({ m: e.message, s: String(e), c: String(e.cause), cause: e.cause });
      expect(text).not.toContain(wrongKey);
      expect(text).not.toContain(parsed.accountKey!);
    }
  });

  it('maps a transactional MD5 rejection by the service to IntegrityError', async () => {
    const blob = container.getBlockBlobClient(`${run}/md5/obj`);
    const err = await blob.stageBlock(Buffer.from('id-1').toString('base64'), Buffer.from('abc'), 3, { transactionalContentMD5: createHash('md5').update('abd').digest() })
      .then(() => undefined, (e: unknown) => e);
    expect(mapAzureError(err, { key: 'md5/obj' }).code).toBe('IntegrityError');
  });

  it('verifies blobs written by other tools: MD5 only, or nothing but the length', async () => {
    const data = pseudoRandomBytes(2 * MiB, 'foreign');
    const blob = container.getBlockBlobClient(`${run}/foreign/md5only`);
    await blob.uploadData(data, { blockSize: MiB, maxSingleShotSize: MiB, blobHTTPHeaders: { blobContentMD5: createHash('md5').update(data).digest() } });
    const head = await store.head('foreign/md5only');
    expect(head.checksums).toEqual({ md5: createHash('md5').update(data).digest('hex') });
    expect((await getBuffer(store, 'foreign/md5only', { verify: true })).equals(data)).toBe(true);
    const bare = container.getBlockBlobClient(`${run}/foreign/bare`);
    await bare.uploadData(data, { blockSize: MiB, maxSingleShotSize: MiB });
    expect((await store.head('foreign/bare')).checksums).toEqual({});
    expect((await getBuffer(store, 'foreign/bare', { verify: true })).equals(data)).toBe(true);
  });

  it('re-sends a staged block after a dropped connection instead of failing the whole streamed put', async () => {
    const upstream = new URL(parseConnectionString(connectionString!).blobEndpoint!);
    let faults = 2;
    let stageRequests = 0;
    // A proxy that kills the connection of the first two Put Block requests, as a stale keep-alive socket would.
    const proxy: Server = createServer((req, res) => {
      if (req.method === 'PUT' && /[?&]comp=block(&|$)/.test(req.url ?? '')) {
        stageRequests++;
        if (faults-- > 0) {
          req.socket.destroy();
          return;
        }
      }
      const up = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (ures) => {
        res.writeHead(ures.statusCode ?? 502, ures.headers);
        ures.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const port = (proxy.address() as { port: number }).port;
      const parsed = parseConnectionString(connectionString!);
      const viaProxy = createAzureStore({
        accountKey: parsed.accountKey, account: parsed.accountName, container: containerName, prefix: run,
        endpoint: `http://127.0.0.1:${port}${upstream.pathname}`, blockSize: MiB, uploadConcurrency: 1,
      });
      const gen = generatedStream(3 * MiB, { seed: 'flaky' });
      const meta = await viaProxy.put('flaky/obj', gen.stream);
      expect(meta.checksums.sha256).toBe(gen.sha256());
      expect(stageRequests).toBe(5);
      const data = await getBuffer(store, 'flaky/obj', { verify: true });
      expect(createHash('sha256').update(data).digest('hex')).toBe(gen.sha256());
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('opens from an az:// URL through the registry, credentials from the environment', async () => {
    const parsed = parseConnectionString(connectionString!);
    const s = await openStore(`az://${parsed.accountName}/${containerName}/${run}/url?endpoint=${parsed.blobEndpoint}`);
    await s.put('k', 'via url');
    expect((await getBuffer(store, 'url/k')).toString()).toBe('via url');
    const ranged = await s.get('k', { range: { suffix: 3 } });
    expect((await collect(ranged.body)).toString()).toBe('url');
    await s.close();
  });
});
