import { bodyBytes, bodyChunks, isReplayableBody } from '../../core/body.js';
import { MultiHasher, checksumMismatches } from '../../core/checksums.js';
import {
  AccessDeniedError, CloudmuxError, IntegrityError, InvalidArgumentError, NotSupportedError, PreconditionFailedError, isCloudmuxError,
  throwIfAborted,
} from '../../core/errors.js';
import { validateKey } from '../../core/keys.js';
import { changeFeed, type ChangePage, type ChangesSinceOptions } from '../../core/change-feed.js';
import { carriedReservedMetadata, validateMetadata } from '../../core/metadata.js';
import { systemMetadata } from '../../core/system-metadata.js';
import { pinnedMetadataUpdate } from '../pinned-metadata-update.js';
import { resolveRange } from '../../core/range.js';
import type {
  BlobStore, Body, ByteRange, Capabilities, ChecksumAlgorithm, Checksums, CopyOptions, DeleteManyResult, GetOptions, GetResult,
  ListItem, ListOptions, ObjectMeta, PresignOptions, PutOptions, SignalOptions, DeleteOptions, UpdateMetadataOptions,
} from '../../core/types.js';
import { checkGet, checkCopy } from '../../core/validate.js';
import {
  DEFAULT_SEGMENT_SIZE, SegmentEncryptor, checkSegmentSize, cipherSize,
  newDataKey, newNoncePrefix, openDigest, plainSize, sealDigest, segmentSpan,
} from './format.js';
import { decryptStream, decryptlessVerify, planStoredRange } from './decrypt-stream.js';
import { formatVersionFor, metadataWithHeader, parseHeader, plaintextMeta, type EncryptionHeader } from './header.js';
import { VAULT_PREFIX } from './vault.js';
import { checkKeyId, type Keyring, type WrapContext } from './keyring.js';
import { redactInspection } from '../../core/redact.js';

export interface EncryptedStoreOptions {
  /** Where key-encryption keys come from. */
  keyring: Keyring;
  /**
   * Key id new objects are encrypted under, or a function asked before each put (a {@link Vault}'s
   * `writeKeyId`, which follows revocations). A vault epoch key id writes format v2, any other v1.
   * Objects under other ids stay readable while the keyring has them.
   */
  keyId: string | (() => string | Promise<string>);
  /** Plaintext bytes per segment for new objects (default 64 KiB). Readers take it from each object. */
  segmentSize?: number;
  /**
   * Read objects that carry no encryption header as plaintext (a bucket being migrated to
   * encryption). Default false: such objects fail with IntegrityError, so nobody with write access
   * to the bucket can slip unauthenticated content past a reader.
   */
  allowPlaintext?: boolean;
  /**
   * After a streamed put, record the plaintext size and sealed SHA-256 with one metadata update
   * (they are only known at the end of the stream). Default true. On S3 that update is a
   * copy-in-place, which for objects over 5 GB is a server-side multipart copy; turn it off to
   * skip it, and streamed objects then report no sha256 from head.
   */
  recordStreamDigest?: boolean;
}

/** What `rotate` did to one object. */
export interface RotateResult {
  /** False when the object was already on the target key. */
  rotated: boolean;
  /** The key id the object was on before. */
  from: string;
  meta: ObjectMeta;
}

/** How many times a read-modify-write of metadata is retried when the object changes under it. */
const RACE_ATTEMPTS = 3;

/**
 * Client-side envelope encryption over any store: the inner store only ever sees ciphertext.
 * Each object gets a random 256-bit data key (DEK); its content is sealed with AES-256-GCM in
 * segments (format v1, docs/encryption-format.md) and the DEK, wrapped by a key-encryption key
 * from the keyring, travels in the object's metadata, so rotation rewrites metadata only.
 *
 * # Contract (beyond BlobStore's)
 * - Sizes, ranges, digests and `verify` are of the plaintext; etags and versions are the inner
 *   store's. User metadata and content type are stored in the clear.
 * - Every byte a read returns has passed authentication; tampering, truncation, reordering and
 *   swapped metadata fail with IntegrityError, a key id the keyring lacks with AccessDenied.
 * - `presign` is NotSupported (a URL would bypass decryption).
 * - Listings report plaintext sizes derived from stored sizes with this store's segment size,
 *   and no digests (the inner ones are of ciphertext); `head` is exact.
 */
export class EncryptedStore implements BlobStore {
  readonly provider: string;
  readonly capabilities: Capabilities;
  private readonly keyring: Keyring;
  private readonly keyId: string | (() => string | Promise<string>);
  private readonly segmentSize: number;
  private readonly allowPlaintext: boolean;
  private readonly recordStreamDigest: boolean;

  constructor(readonly inner: BlobStore, options: EncryptedStoreOptions) {
    if (typeof options.keyId === 'string') checkKeyId(options.keyId);
    this.segmentSize = options.segmentSize ?? DEFAULT_SEGMENT_SIZE;
    checkSegmentSize(this.segmentSize);
    this.keyring = options.keyring;
    this.keyId = options.keyId;
    this.allowPlaintext = options.allowPlaintext ?? false;
    this.recordStreamDigest = options.recordStreamDigest ?? true;
    this.provider = inner.provider;
    // Parts would reach the provider as plaintext: resumable uploads are not passed through.
    this.capabilities = { ...inner.capabilities, presign: false, nativeChecksums: [], resumableUpload: false, copyFromStore: false };
  }

  async put(key: string, body: Body, opts: PutOptions = {}): Promise<ObjectMeta> {
    validateKey(key, this.provider);
    validateMetadata(opts.metadata, this.provider, key);
    throwIfAborted(opts.signal, { provider: this.provider, key });
    const algorithms = extraAlgorithms(opts.expect);
    const keyId = typeof this.keyId === 'string' ? this.keyId : await this.keyId();
    checkKeyId(keyId);
    const dek = newDataKey();
    const noncePrefix = newNoncePrefix();
    const header: EncryptionHeader = {
      version: formatVersionFor(keyId),
      keyId,
      wrappedKey: Buffer.from(await this.keyring.wrap(keyId, dek, wrapContext(keyId, noncePrefix))),
      noncePrefix,
      segmentSize: this.segmentSize,
    };
    const base = { ...opts.metadata };
    const innerOpts: PutOptions = { contentType: opts.contentType, ifNoneMatch: opts.ifNoneMatch, ifMatch: opts.ifMatch, signal: opts.signal };

    if (isReplayableBody(body)) {
      // In memory already: digest first, so the header is complete in the one write, and hand the
      // inner store a Buffer it can replay on retry.
      const plain = bodyBytes(body);
      const hasher = new MultiHasher(algorithms);
      hasher.update(plain);
      const digests = hasher.digest();
      this.checkExpected(opts, digests, plain.byteLength, key);
      header.plainSize = plain.byteLength;
      header.sealedDigest = sealDigest(dek, noncePrefix, this.segmentSize, Buffer.from(digests.sha256!, 'hex'));
      const enc = new SegmentEncryptor(dek, noncePrefix, this.segmentSize);
      const sealed = Buffer.concat([...enc.update(plain), ...enc.final()]);
      const meta = await this.inner.put(key, sealed, { ...innerOpts, size: sealed.byteLength, metadata: metadataWithHeader(base, header, { provider: this.provider, key }) });
      return this.describeKnown(meta, header, digests.sha256!);
    }

    if (opts.size !== undefined) {
      header.plainSize = opts.size;
      innerOpts.size = cipherSize(opts.size, this.segmentSize);
    }
    const hasher = new MultiHasher(algorithms);
    let digests: Checksums | undefined;
    const signal = opts.signal;
    const provider = this.provider;
    const checkExpected = this.checkExpected.bind(this);
    const segmentSize = this.segmentSize;
    async function* sealedStream(): AsyncGenerator<Buffer> {
      const enc = new SegmentEncryptor(dek, noncePrefix, segmentSize);
      for await (const chunk of bodyChunks(body)) {
        throwIfAborted(signal, { provider, key });
        hasher.update(chunk);
        for (const c of enc.update(chunk)) yield c;
      }
      throwIfAborted(signal, { provider, key });
      // Fail before the last segment is sealed, so the inner store never completes the object.
      digests = hasher.digest();
      checkExpected(opts, digests, hasher.bytes, key);
      for (const c of enc.final()) yield c;
    }
    const meta = await this.inner.put(key, sealedStream(), { ...innerOpts, metadata: metadataWithHeader(base, header, { provider: this.provider, key }) });
    const sha256 = digests!.sha256!;
    header.plainSize = hasher.bytes;
    header.sealedDigest = sealDigest(dek, noncePrefix, this.segmentSize, Buffer.from(sha256, 'hex'));
    if (this.recordStreamDigest) {
      try {
        return this.describeKnown(await this.rewriteHeader(meta, header, opts.signal), header, sha256);
      } catch {
        // The object is durable and authenticated segment by segment; only the recorded digest is
        // missing (overwritten meanwhile, or the update failed). Report what was written.
      }
    }
    return this.describeKnown(meta, header, sha256);
  }

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    checkGet(this.provider, key, opts);
    if (opts.range) return this.getRange(key, opts.range, opts);
    const r = await this.inner.get(key, { ifMatch: opts.ifMatch, ifNoneMatch: opts.ifNoneMatch, signal: opts.signal });
    try {
      const header = this.header(r.meta, key);
      if (!header) return this.plaintextResult(r, opts.verify === true, key);
      const size = this.plainSizeOf(r.meta, header, key);
      const dek = await this.unwrap(header, key);
      const sha256 = this.openSealedDigest(dek, header, key);
      const body = decryptStream(r.body, {
        dek, prefix: header.noncePrefix, segmentSize: header.segmentSize, plainSize: size, provider: this.provider, key,
        cipherSkip: 0, cipherLength: r.meta.size, plainSkip: 0, plainLength: size, strictEnd: true,
        expectSha256: opts.verify ? sha256 : undefined,
      });
      return { meta: plaintextMeta(r.meta, size, sha256), body };
    } catch (e) {
      r.body.destroy();
      throw e;
    }
  }

  /**
   * One round trip in the common case: the stored range is planned with this store's segment size
   * and checked against the object's header when it arrives; if the object was written with
   * another segment size the exact range is fetched again, pinned to the same etag.
   */
  private async getRange(key: string, range: ByteRange, opts: GetOptions): Promise<GetResult> {
    let segmentSize = this.segmentSize;
    let exact: { offset: number; length: number } | undefined;
    let etag = opts.ifMatch;
    for (let attempt = 0; ; attempt++) {
      const planned: ByteRange = exact ?? planStoredRange(range, segmentSize);
      let r: GetResult;
      try {
        r = await this.inner.get(key, { range: planned, ifMatch: etag, ifNoneMatch: opts.ifNoneMatch, signal: opts.signal });
      } catch (e) {
        if (attempt < RACE_ATTEMPTS && exact && etag !== opts.ifMatch && isCloudmuxError(e, 'PreconditionFailed')) {
          // Overwritten between the two fetches: plan again from scratch.
          exact = undefined;
          etag = opts.ifMatch;
          segmentSize = this.segmentSize;
          continue;
        }
        if (!exact && isCloudmuxError(e, 'InvalidRange')) {
          // Planned with a guessed segment size; decide on the object's real header.
          const meta = await this.inner.head(key, { signal: opts.signal });
          const header = this.header(meta, key);
          if (!header) return this.plaintextRange(key, range, meta.etag, opts);
          const size = this.plainSizeOf(meta, header, key);
          const pr = resolveRange(range, size, this.provider, key);
          const span = segmentSpan(pr.offset, pr.length, size, header.segmentSize);
          exact = { offset: span.cipherOffset, length: span.cipherLength };
          etag = meta.etag;
          segmentSize = header.segmentSize;
          if (attempt < RACE_ATTEMPTS) continue;
        }
        throw e;
      }
      try {
        const header = this.header(r.meta, key);
        if (!header) {
          r.body.destroy();
          return await this.plaintextRange(key, range, r.meta.etag, opts);
        }
        const size = this.plainSizeOf(r.meta, header, key);
        const pr = resolveRange(range, size, this.provider, key);
        const span = segmentSpan(pr.offset, pr.length, size, header.segmentSize);
        const got = r.range ?? { offset: 0, length: r.meta.size };
        if (got.offset <= span.cipherOffset && got.offset + got.length >= span.cipherOffset + span.cipherLength) {
          const dek = await this.unwrap(header, key);
          const sha256 = this.openSealedDigest(dek, header, key);
          const body = decryptStream(r.body, {
            dek, prefix: header.noncePrefix, segmentSize: header.segmentSize, plainSize: size, provider: this.provider, key,
            firstSegment: span.firstSegment, lastSegment: span.lastSegment,
            cipherSkip: span.cipherOffset - got.offset, cipherLength: span.cipherLength,
            plainSkip: span.skip, plainLength: pr.length, strictEnd: false,
          });
          return { meta: plaintextMeta(r.meta, size, sha256), body, range: pr };
        }
        r.body.destroy();
        if (attempt >= RACE_ATTEMPTS) throw new IntegrityError('stored range did not cover the requested segments', { provider: this.provider, key });
        exact = { offset: span.cipherOffset, length: span.cipherLength };
        etag = r.meta.etag;
        segmentSize = header.segmentSize;
      } catch (e) {
        r.body.destroy();
        throw e;
      }
    }
  }

  async head(key: string, opts: SignalOptions = {}): Promise<ObjectMeta> {
    validateKey(key, this.provider);
    return this.describe(await this.inner.head(key, opts), key);
  }

  async delete(key: string, opts?: DeleteOptions): Promise<void> {
    return this.inner.delete(key, opts);
  }

  async deleteMany(keys: Iterable<string>, opts?: SignalOptions): Promise<DeleteManyResult> {
    return this.inner.deleteMany(keys, opts);
  }

  async *list(opts: ListOptions = {}): AsyncGenerator<ListItem> {
    for await (const item of this.inner.list(opts)) {
      // Membership records are the vault's, stored in the clear beside the objects.
      if ((item.type === 'prefix' ? item.prefix : item.key).startsWith(VAULT_PREFIX)) continue;
      if (item.type === 'prefix') {
        yield item;
        continue;
      }
      // The inner digests are of ciphertext; the plaintext one needs head.
      const { checksums: _ciphertextDigests, ...rest } = item;
      yield { ...rest, size: plainSize(item.size, this.segmentSize) ?? item.size };
    }
  }

  async copy(src: string, dst: string, opts: CopyOptions = {}): Promise<ObjectMeta> {
    checkCopy(this.provider, this.capabilities, src, dst, opts);
    if (!opts.metadata) {
      // Ciphertext and header travel together; nothing in the format names the key, so the copy
      // decrypts as is.
      return this.describe(await this.inner.copy(src, dst, opts), dst);
    }
    const replacement = opts.metadata;
    for (let attempt = 1; ; attempt++) {
      const source = await this.inner.head(src, { signal: opts.signal });
      if (opts.sourceIfMatch !== undefined && opts.sourceIfMatch !== source.etag) {
        throw new PreconditionFailedError(`source etag is ${source.etag}, not ${opts.sourceIfMatch}`, { provider: this.provider, key: src });
      }
      try {
        const meta = await this.inner.copy(src, dst, {
          ...opts,
          metadata: systemMetadata({ ...replacement, ...carriedReservedMetadata(source.metadata) }),
          sourceIfMatch: source.etag,
        });
        return await this.describe(meta, dst);
      } catch (e) {
        if (attempt < RACE_ATTEMPTS && opts.sourceIfMatch === undefined && isCloudmuxError(e, 'PreconditionFailed')) continue;
        throw e;
      }
    }
  }

  async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    validateKey(key, this.provider);
    validateMetadata(opts.metadata, this.provider, key);
    throwIfAborted(opts.signal, { provider: this.provider, key });
    // Pinned to the etag just read, so a concurrent overwrite never gets the old header.
    const meta = await pinnedMetadataUpdate(this.inner, key, opts, this.provider, RACE_ATTEMPTS);
    return await this.describe(meta, key);
  }

  /**
   * Re-wraps the object's data key under `toKeyId` and rewrites its metadata only (no data is
   * read or written). Idempotent: an object already on `toKeyId` is left alone (`rotated: false`).
   * Errors: NotFound, AccessDenied (a key id the keyring lacks), IntegrityError (not encrypted, or
   * the wrapped key does not open), PreconditionFailed (`ifMatch`).
   */
  async rotate(key: string, toKeyId: string, opts: SignalOptions & { ifMatch?: string } = {}): Promise<RotateResult> {
    validateKey(key, this.provider);
    checkKeyId(toKeyId);
    for (let attempt = 1; ; attempt++) {
      const current = await this.inner.head(key, { signal: opts.signal });
      if (opts.ifMatch !== undefined && opts.ifMatch !== current.etag) {
        throw new PreconditionFailedError(`etag is ${current.etag}, not ${opts.ifMatch}`, { provider: this.provider, key });
      }
      const header = parseHeader(current.metadata, { provider: this.provider, key });
      if (!header) throw new IntegrityError('object is not encrypted; nothing to rotate', { provider: this.provider, key });
      if (header.keyId === toKeyId) return { rotated: false, from: header.keyId, meta: await this.describe(current, key) };
      const dek = await this.unwrap(header, key);
      const rewrapped: EncryptionHeader = {
        ...header,
        version: formatVersionFor(toKeyId),
        keyId: toKeyId,
        wrappedKey: Buffer.from(await this.keyring.wrap(toKeyId, dek, wrapContext(toKeyId, header.noncePrefix))),
      };
      try {
        const meta = await this.rewriteHeader(current, rewrapped, opts.signal);
        return { rotated: true, from: header.keyId, meta: plaintextMeta(meta, this.plainSizeOf(meta, rewrapped, key), this.openSealedDigest(dek, rewrapped, key)) };
      } catch (e) {
        if (attempt < RACE_ATTEMPTS && opts.ifMatch === undefined && isCloudmuxError(e, 'PreconditionFailed')) continue;
        throw e;
      }
    }
  }

  /** AccessDenied unless the keyring can wrap and unwrap under `keyId`. */
  async assertKey(keyId: string): Promise<void> {
    checkKeyId(keyId);
    if (!(await this.keyring.has(keyId))) {
      throw new AccessDeniedError(`key id ${keyId} is not in the keyring (${this.keyring.toString()})`, { provider: this.provider });
    }
  }

  async presign(key: string, _opts: PresignOptions): Promise<string> {
    throw new NotSupportedError('an encrypted store cannot presign URLs: the bearer would get or put ciphertext', { provider: this.provider, key });
  }

  /**
   * The inner store's change feed (with `capabilities.changeFeed`): keys, versions and etags are
   * the inner store's, sizes and digests are of ciphertext and so left out (`head` gives the
   * plaintext ones).
   */
  async changesSince(cursor: string | undefined, opts?: ChangesSinceOptions): Promise<ChangePage> {
    const page = await changeFeed(this.inner).changesSince(cursor, opts);
    return { ...page, changes: page.changes.map(({ size: _size, sha256: _sha, ...rest }) => rest) };
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  toString(): string {
    return `Encrypted(${this.inner.toString()})`;
  }

  // ------------------------------------------------------------------------------------------

  private checkExpected(opts: PutOptions, digests: Checksums, bytes: number, key: string): void {
    if (opts.size !== undefined && bytes !== opts.size) {
      throw new InvalidArgumentError(`body was ${bytes} bytes, but size said ${opts.size}; nothing was written`, { provider: this.provider, key });
    }
    if (opts.expect && checksumMismatches(opts.expect, digests).length > 0) {
      throw new IntegrityError('body does not match the expected checksums; nothing was written', { provider: this.provider, key });
    }
  }

  /** Replaces the header of the object `current` describes, pinned to its etag (PreconditionFailed if it changed). */
  private rewriteHeader(current: ObjectMeta, header: EncryptionHeader, signal: AbortSignal | undefined): Promise<ObjectMeta> {
    return this.inner.updateMetadata(current.key, {
      metadata: metadataWithHeader(current.metadata, header, { provider: this.provider, key: current.key }),
      contentType: current.contentType,
      ifMatch: current.etag,
      signal,
    });
  }

  private header(meta: ObjectMeta, key: string): EncryptionHeader | undefined {
    const header = parseHeader(meta.metadata, { provider: this.provider, key });
    if (!header && !this.allowPlaintext) {
      throw new IntegrityError('object is not encrypted (no cloudmux_enc metadata); refusing to return unauthenticated bytes', { provider: this.provider, key });
    }
    return header;
  }

  /** Plaintext size from the stored size; a size no plaintext encrypts to means cut or padded data. */
  private plainSizeOf(meta: ObjectMeta, header: EncryptionHeader, key: string): number {
    const size = plainSize(meta.size, header.segmentSize);
    if (size === undefined || (header.plainSize !== undefined && header.plainSize !== size)) {
      throw new IntegrityError(`stored size ${meta.size} does not match the encrypted format (truncated or appended data)`, { provider: this.provider, key });
    }
    return size;
  }

  private async unwrap(header: EncryptionHeader, key: string): Promise<Buffer> {
    try {
      return Buffer.from(await this.keyring.unwrap(header.keyId, header.wrappedKey, wrapContext(header.keyId, header.noncePrefix, header.version)));
    } catch (e) {
      // Keyring errors know the key id, not the object: say which object needed it.
      if (e instanceof CloudmuxError && e.key === undefined) throw new CloudmuxError(e.code, e.message, { provider: this.provider, key, cause: e });
      throw e;
    }
  }

  private openSealedDigest(dek: Buffer, header: EncryptionHeader, key: string): string | undefined {
    if (!header.sealedDigest) return undefined;
    const sha = openDigest(dek, header.noncePrefix, header.segmentSize, header.sealedDigest);
    if (!sha) throw new IntegrityError('the recorded plaintext digest failed authentication (metadata altered or swapped)', { provider: this.provider, key });
    return sha.toString('hex');
  }

  private async describe(meta: ObjectMeta, key: string): Promise<ObjectMeta> {
    const header = this.header(meta, key);
    if (!header) return meta;
    const size = this.plainSizeOf(meta, header, key);
    const sha256 = header.sealedDigest ? this.openSealedDigest(await this.unwrap(header, key), header, key) : undefined;
    return plaintextMeta(meta, size, sha256);
  }

  private describeKnown(meta: ObjectMeta, header: EncryptionHeader, sha256: string): ObjectMeta {
    return plaintextMeta(meta, this.plainSizeOf(meta, header, meta.key), sha256);
  }

  private plaintextResult(r: GetResult, verify: boolean, key: string): GetResult {
    if (!verify) return r;
    const expected = r.meta.checksums.sha256;
    const body = decryptlessVerify(r.body, expected, r.meta.size, this.provider, key);
    return { ...r, body };
  }

  private async plaintextRange(key: string, range: ByteRange, etag: string, opts: GetOptions): Promise<GetResult> {
    return this.inner.get(key, { range, ifMatch: etag, signal: opts.signal });
  }
}
redactInspection(EncryptedStore);

// ----------------------------------------------------------------------------------------------

function extraAlgorithms(expect: PutOptions['expect']): ChecksumAlgorithm[] {
  const out: ChecksumAlgorithm[] = [];
  if (expect?.md5) out.push('md5');
  if (expect?.crc32c) out.push('crc32c');
  return out;
}

function wrapContext(keyId: string, noncePrefix: Buffer, version = formatVersionFor(keyId)): WrapContext {
  return { formatVersion: version, keyId, noncePrefix: noncePrefix.toString('base64') };
}
