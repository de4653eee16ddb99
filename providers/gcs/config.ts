import { readFileSync } from 'node:fs';
import type { Storage } from '@google-cloud/storage';
import { InvalidConfigError } from '../../src/core/errors.js';
import { validatePrefix } from '../../src/core/keys.js';
import { StoreUrlParams, bucketAndPrefix, overlayDefined } from '../../src/core/store-url.js';
import { redactOnInspect } from '../../src/core/redact.js';

/** The provider name in errors and handles. */
export const PROVIDER = 'gcs';

const KiB = 1024;
const MiB = 1024 * KiB;

/** GCS's own limits. */
export const GCS_LIMITS = {
  /** Resumable chunks (all but the last) end on multiples of this. */
  chunkMultiple: 256 * KiB,
  /** Longest V4 signed URL lifetime. */
  maxPresignSeconds: 7 * 24 * 3600,
  /** Object names are at most this many UTF-8 bytes. */
  maxNameBytes: 1024,
} as const;

/** Service-account fields V4 URL signing needs. Nothing else of a key file is read. */
export interface GcsSigningCredentials {
  client_email: string;
  private_key: string;
  [field: string]: unknown;
}

/** Typed options of {@link GcsStore}. Every field but `bucket` has a documented default. */
export interface GcsStoreOptions {
  bucket: string;
  /** Key prefix applied to every operation and stripped from listed keys (default none). */
  prefix?: string;
  /** Default: whatever the SDK resolves (not needed for object operations). */
  projectId?: string;
  /** Custom endpoint, e.g. an emulator at `http://127.0.0.1:4443`. Absent: Google. */
  apiEndpoint?: string;
  /** Send credentials to a custom endpoint too (default false: emulators take none). */
  useAuthWithCustomEndpoint?: boolean;
  /** Service-account key file. Default: the SDK's chain (ADC, GOOGLE_APPLICATION_CREDENTIALS, metadata server). */
  keyFilename?: string;
  /** Service-account credentials given inline. */
  credentials?: GcsSigningCredentials;
  /**
   * Bodies up to this many bytes are sent in one multipart request with their crc32c and md5 (the
   * server rejects a mismatch); larger ones use a resumable upload (default 8 MiB).
   */
  singleRequestThreshold?: number;
  /** Resumable chunk size, a multiple of 256 KiB (default 8 MiB). Memory held ≈ 3 × chunkSize. */
  chunkSize?: number;
  /**
   * Times one resumable upload re-sends a chunk after a network failure or a 5xx/429, resuming from
   * the offset the server reports (default 3). This is not a retry of the put: the bytes already
   * acknowledged are never re-sent, and a put of a one-shot stream has no other way to survive a
   * dropped connection. Set 0 to leave every failure to the retry layer. The part engine does these
   * re-sends for `put`; `uploadPart` and `completeUpload` (resumable uploads) make one attempt
   * each and leave re-sends to their caller's engine, so attempts are never multiplied.
   */
  chunkRetries?: number;
  /** Keys deleted at once by deleteMany (default 16). */
  deleteConcurrency?: number;
  /**
   * Whether presign() works. Default: true when a service-account key (client_email + private_key) is
   * configured through `credentials`, `keyFilename` or GOOGLE_APPLICATION_CREDENTIALS; false
   * otherwise (user ADC cannot sign). Set true when the identity can sign through IAM signBlob.
   */
  presign?: boolean;
  /** Bring your own client (tests, shared pools). Its retry settings are then yours to turn off. */
  storage?: Storage;
}

export interface ResolvedGcsOptions {
  bucket: string;
  prefix: string;
  projectId: string | undefined;
  apiEndpoint: string | undefined;
  useAuthWithCustomEndpoint: boolean;
  keyFilename: string | undefined;
  credentials: GcsSigningCredentials | undefined;
  singleRequestThreshold: number;
  chunkSize: number;
  chunkRetries: number;
  deleteConcurrency: number;
  presign: boolean;
  storage: Storage | undefined;
}

const BUCKET = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

function invalid(message: string): never {
  throw new InvalidConfigError(`gcs: ${message}`, { provider: 'gcs' });
}

export function resolveOptions(o: GcsStoreOptions): ResolvedGcsOptions {
  if (!o.bucket || !BUCKET.test(o.bucket)) invalid(`invalid bucket name ${JSON.stringify(o.bucket ?? '')}`);
  let prefix = '';
  if (o.prefix) {
    validatePrefix(o.prefix, 'gcs');
    prefix = o.prefix.endsWith('/') ? o.prefix : `${o.prefix}/`;
  }
  if (o.apiEndpoint !== undefined) {
    let u: URL | undefined;
    try {
      u = new URL(o.apiEndpoint);
    } catch {
      invalid('apiEndpoint must be an http(s) URL');
    }
    if (u.username || u.password) invalid('apiEndpoint must not carry credentials');
    if (u.protocol !== 'http:' && u.protocol !== 'https:') invalid('apiEndpoint must be an http(s) URL');
  }
  const singleRequestThreshold = o.singleRequestThreshold ?? 8 * MiB;
  if (!Number.isSafeInteger(singleRequestThreshold) || singleRequestThreshold < 0 || singleRequestThreshold > 1024 * MiB) {
    invalid(`singleRequestThreshold must be an integer between 0 and 1 GiB, got ${singleRequestThreshold}`);
  }
  const chunkSize = o.chunkSize ?? 8 * MiB;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < GCS_LIMITS.chunkMultiple || chunkSize % GCS_LIMITS.chunkMultiple !== 0 || chunkSize > 1024 * MiB) {
    invalid(`chunkSize must be a multiple of 256 KiB up to 1 GiB, got ${chunkSize}`);
  }
  const chunkRetries = o.chunkRetries ?? 3;
  if (!Number.isSafeInteger(chunkRetries) || chunkRetries < 0 || chunkRetries > 20) invalid(`chunkRetries must be an integer in 0..20, got ${chunkRetries}`);
  const deleteConcurrency = o.deleteConcurrency ?? 16;
  if (!Number.isSafeInteger(deleteConcurrency) || deleteConcurrency < 1 || deleteConcurrency > 256) {
    invalid(`deleteConcurrency must be an integer in 1..256, got ${deleteConcurrency}`);
  }
  if (o.credentials !== undefined && (typeof o.credentials.client_email !== 'string' || typeof o.credentials.private_key !== 'string')) {
    invalid('credentials need client_email and private_key');
  }
  return redactOnInspect({
    bucket: o.bucket,
    prefix,
    projectId: o.projectId,
    apiEndpoint: o.apiEndpoint?.replace(/\/+$/, ''),
    useAuthWithCustomEndpoint: o.useAuthWithCustomEndpoint ?? false,
    keyFilename: o.keyFilename,
    credentials: o.credentials,
    singleRequestThreshold,
    chunkSize,
    chunkRetries,
    deleteConcurrency,
    presign: o.presign ?? hasSigningKey(o),
    storage: o.storage,
  });
}

/** True when a service-account private key is configured, so V4 URLs can be signed locally. */
function hasSigningKey(o: GcsStoreOptions): boolean {
  if (o.credentials) return true;
  const file = o.keyFilename ?? process.env.GOOGLE_APPLICATION_CREDENTIALS;
  if (!file || !file.endsWith('.json')) return false;
  try {
    const json = JSON.parse(readFileSync(file, 'utf8')) as { client_email?: unknown; private_key?: unknown };
    return typeof json.client_email === 'string' && typeof json.private_key === 'string';
  } catch {
    return false;
  }
}

const URL_PARAMS = ['apiEndpoint', 'projectId', 'useAuthWithCustomEndpoint', 'singleRequestThreshold', 'chunkSize', 'chunkRetries', 'deleteConcurrency', 'presign'];

/**
 * `gs://bucket/optional/prefix?apiEndpoint=http%3A%2F%2F127.0.0.1%3A4443&projectId=p` plus
 * `singleRequestThreshold`, `chunkSize`, `chunkRetries`, `deleteConcurrency`, `presign`,
 * `useAuthWithCustomEndpoint`. Credentials never come from the URL (user info is rejected); they
 * come from `options` or the SDK chain. Explicit `options` win over URL parameters.
 */
export function optionsFromUrl(url: URL, options: Partial<GcsStoreOptions> = {}): GcsStoreOptions {
  if (url.protocol !== 'gs:') invalid(`expected a gs:// URL, got ${url.protocol}`);
  if (url.username || url.password) invalid('credentials do not belong in the URL; use ADC, keyFilename or options.credentials');
  const q = new StoreUrlParams(url, URL_PARAMS, 'gcs');
  return overlayDefined<GcsStoreOptions>({
    ...bucketAndPrefix(url),
    apiEndpoint: q.string('apiEndpoint'),
    projectId: q.string('projectId'),
    useAuthWithCustomEndpoint: q.bool('useAuthWithCustomEndpoint'),
    singleRequestThreshold: q.int('singleRequestThreshold'),
    chunkSize: q.int('chunkSize'),
    chunkRetries: q.int('chunkRetries'),
    deleteConcurrency: q.int('deleteConcurrency'),
    presign: q.bool('presign'),
  }, options);
}
