import { InvalidConfigError } from '../../src/core/errors.js';
import { validatePrefix } from '../../src/core/keys.js';
import { StoreUrlParams, bucketAndPrefix, overlayDefined } from '../../src/core/store-url.js';
import { md5InTransit, type TransportMd5 } from '../../src/core/transport-md5.js';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { redactOnInspect } from '../../src/core/redact.js';

/** The provider name in errors and handles. */
export const PROVIDER = 's3';
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
export const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** S3's own limits, the same on every compatible server that matters. */
export const S3_LIMITS = {
  minPartSize: 5 * MiB,
  maxPartSize: 5 * GiB,
  maxParts: 10_000,
  /** Largest single PutObject / CopyObject. */
  maxSingleShot: 5 * GiB,
  maxDeleteBatch: 1000,
  maxPresignSeconds: 7 * 24 * 3600,
} as const;

/** Typed options of {@link S3Store}. Every field but `bucket` has a documented default. */
export interface S3StoreOptions {
  bucket: string;
  /** Key prefix applied to every operation and stripped from listed keys (default none). */
  prefix?: string;
  /** Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else the SDK's shared config; `us-east-1` for custom endpoints. */
  region?: string;
  /** Custom endpoint (MinIO, R2, Wasabi, Ceph, s3rver). Absent: AWS. */
  endpoint?: string;
  /** Path-style addressing (default: true for custom endpoints, false for AWS). */
  forcePathStyle?: boolean;
  /** Default: the SDK's provider chain (env, shared config, SSO, IMDS). Never parsed by cloudmux. */
  credentials?: S3ClientConfig['credentials'];
  /** Multipart part size in bytes (default 8 MiB, at least 5 MiB). Also the single-PUT threshold. */
  partSize?: number;
  /** Parts uploaded (or copied) at once per put (default 4). Memory held ≈ (queueSize + 1) × partSize. */
  queueSize?: number;
  /**
   * Whether the endpoint honours If-None-Match / If-Match on writes. Default: true on AWS, false on
   * custom endpoints (many compatibles silently ignore the headers, which would make a "create only"
   * put overwrite). Declared, never probed.
   */
  conditionalPut?: boolean;
  /**
   * Whether the endpoint honours If-Match on DeleteObject (AWS does, since 2024). Default: true on
   * AWS, false on custom endpoints (s3rver and many compatibles ignore it and delete anyway).
   * Declared, never probed; without it a delete with `ifMatch` is NotSupported.
   */
  conditionalDelete?: boolean;
  /**
   * Whether to send and read S3's flexible checksums (x-amz-checksum-sha256). Default: true on AWS,
   * false on custom endpoints, which get `requestChecksumCalculation: 'WHEN_REQUIRED'` and
   * Content-MD5 per request instead.
   */
  flexibleChecksums?: boolean;
  /**
   * Without flexible checksums (custom endpoints): whether each multipart part carries a
   * Content-MD5 the server checks on arrival. `auto` (default): only over plain `http:` (or with a
   * caller's own `client`, whose endpoint is not known here), where
   * nothing else protects the bytes in transit; over `https:` TLS already authenticates every
   * byte, and MD5 (about 0.5 GB/s per core, the slowest hash we compute) would cap the upload
   * rate for no added protection. The object still records `cloudmux_sha256`, computed from the
   * bytes sent. `always`: also over TLS (a TLS-terminating proxy on the way); `never`: not even
   * over http. Single-part puts keep their Content-MD5 (it is also the object's ETag check).
   */
  partMd5?: TransportMd5;
  /** Objects larger than this are copied with UploadPartCopy (default and maximum 5 GiB). */
  multipartCopyThreshold?: number;
  /**
   * Serve get and head with requests the driver signs and sends itself (same SigV4 signer, endpoint
   * rules and connection pool as the SDK client, a fraction of the CPU) where that gives the same
   * result; see S3Store for when the SDK path serves them anyway. Default true. No effect with
   * `client` or `flexibleChecksums`.
   */
  fastReads?: boolean;
  /**
   * Whether a single-part object's ETag is reported as its MD5 (`checksums.md5`) where S3 defines
   * it so: 32 hex digits (a multipart ETag has a `-N` suffix), no SSE-C, and no server-side
   * encryption other than AES256 on AWS (KMS ETags are not MD5s; compatibles that encrypt make
   * their own). Only from get and head, which carry the encryption headers, never from listings.
   * Default true; set false for an S3-compatible whose plain ETags are something else.
   */
  etagMd5?: boolean;
  /** Bring your own client (tests, shared connection pools). `close()` then leaves it open. */
  client?: S3Client;
}

/** Options with every default applied. */
export interface ResolvedS3Options {
  bucket: string;
  prefix: string;
  region: string | undefined;
  endpoint: string | undefined;
  forcePathStyle: boolean;
  credentials: S3StoreOptions['credentials'];
  partSize: number;
  queueSize: number;
  conditionalPut: boolean;
  conditionalDelete: boolean;
  flexibleChecksums: boolean;
  /** Multipart parts carry Content-MD5 (partMd5 resolved; false with flexible checksums, which send SHA-256 instead). */
  partMd5: boolean;
  multipartCopyThreshold: number;
  isAws: boolean;
  fastReads: boolean;
  etagMd5: boolean;
  client: S3Client | undefined;
}

/** True for endpoints that are AWS S3 itself (absent, or a *.amazonaws.com host). */
export function isAwsEndpoint(endpoint: string | undefined): boolean {
  if (!endpoint) return true;
  try {
    const host = new URL(endpoint).hostname;
    return host.endsWith('.amazonaws.com') || host.endsWith('.amazonaws.com.cn');
  } catch {
    return false;
  }
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function resolveOptions(o: S3StoreOptions): ResolvedS3Options {
  if (!o.bucket || !BUCKET.test(o.bucket)) throw new InvalidConfigError(`s3: invalid bucket name ${JSON.stringify(o.bucket ?? '')}`, { provider: 's3' });
  const prefix = normalizePrefix(o.prefix ?? '');
  if (o.endpoint !== undefined) {
    try {
      const u = new URL(o.endpoint);
      if (u.username || u.password) throw new Error('credentials in URL');
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    } catch (e) {
      throw new InvalidConfigError(`s3: endpoint must be an http(s) URL without credentials (${(e as Error).message})`, { provider: 's3' });
    }
  }
  const isAws = isAwsEndpoint(o.endpoint);
  const partSize = o.partSize ?? 8 * MiB;
  if (!Number.isSafeInteger(partSize) || partSize < S3_LIMITS.minPartSize || partSize > S3_LIMITS.maxPartSize) {
    throw new InvalidConfigError(`s3: partSize must be an integer between 5 MiB and 5 GiB, got ${partSize}`, { provider: 's3' });
  }
  const queueSize = o.queueSize ?? 4;
  if (!Number.isSafeInteger(queueSize) || queueSize < 1 || queueSize > 64) {
    throw new InvalidConfigError(`s3: queueSize must be an integer in 1..64, got ${queueSize}`, { provider: 's3' });
  }
  const multipartCopyThreshold = Math.min(o.multipartCopyThreshold ?? S3_LIMITS.maxSingleShot, S3_LIMITS.maxSingleShot);
  const region = o.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (isAws ? undefined : 'us-east-1');
  return redactOnInspect({
    bucket: o.bucket,
    prefix,
    region,
    endpoint: o.endpoint,
    forcePathStyle: o.forcePathStyle ?? !isAws,
    credentials: o.credentials,
    partSize,
    queueSize,
    conditionalPut: o.conditionalPut ?? isAws,
    conditionalDelete: o.conditionalDelete ?? isAws,
    flexibleChecksums: o.flexibleChecksums ?? isAws,
    // Without an endpoint: AWS itself (TLS), unless a caller's own client hides where it sends.
    partMd5: md5InTransit(o.partMd5, o.endpoint ?? (o.client ? undefined : 'https://s3.amazonaws.com'), 'partMd5', 's3'),
    multipartCopyThreshold,
    isAws,
    fastReads: o.fastReads ?? true,
    etagMd5: o.etagMd5 ?? true,
    client: o.client,
  });
}

/** `a/b` and `a/b/` both mean "everything under a/b/". */
function normalizePrefix(prefix: string): string {
  if (prefix === '') return '';
  validatePrefix(prefix, 's3');
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

const URL_PARAMS = ['region', 'endpoint', 'forcePathStyle', 'conditionalPut', 'conditionalDelete', 'flexibleChecksums', 'partSize', 'queueSize', 'fastReads', 'etagMd5', 'partMd5'];

/**
 * `s3://bucket/optional/prefix?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A9000&forcePathStyle=true`
 * plus `conditionalPut`, `conditionalDelete`, `flexibleChecksums`, `partSize`, `queueSize`, `fastReads`, `etagMd5`, `partMd5`. Credentials are never read
 * from the URL (user info is rejected); they come from `options.credentials` or the SDK chain.
 * Explicit `options` win over URL parameters.
 */
export function optionsFromUrl(url: URL, options: Partial<S3StoreOptions> = {}): S3StoreOptions {
  if (url.protocol !== 's3:') throw new InvalidConfigError(`s3: expected an s3:// URL, got ${url.protocol}`, { provider: 's3' });
  if (url.username || url.password) throw new InvalidConfigError('s3: credentials do not belong in the URL; use the SDK credential chain or options.credentials', { provider: 's3' });
  const q = new StoreUrlParams(url, URL_PARAMS, 's3');
  return overlayDefined<S3StoreOptions>({
    ...bucketAndPrefix(url),
    region: q.string('region'),
    endpoint: q.string('endpoint'),
    forcePathStyle: q.bool('forcePathStyle'),
    conditionalPut: q.bool('conditionalPut'),
    conditionalDelete: q.bool('conditionalDelete'),
    flexibleChecksums: q.bool('flexibleChecksums'),
    partSize: q.int('partSize'),
    queueSize: q.int('queueSize'),
    fastReads: q.bool('fastReads'),
    etagMd5: q.bool('etagMd5'),
    partMd5: q.string('partMd5') as S3StoreOptions['partMd5'],
  }, options);
}
