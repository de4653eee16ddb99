import { InvalidConfigError } from '../../src/core/errors.js';
import { redactOnInspect } from '../../src/core/redact.js';
import { md5InTransit, type TransportMd5 } from '../../src/core/transport-md5.js';

/** The provider name in errors and handles. */
export const PROVIDER = 'azure';

/** An object that issues Azure AD tokens (the @azure/identity `TokenCredential` shape). */
export interface AzureTokenCredential {
  getToken(scopes: string | string[], options?: unknown): Promise<{ token: string; expiresOnTimestamp: number } | null>;
}

/**
 * Typed options for {@link AzureStore}. Anything not given is taken from the URL, then from the
 * environment (AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN), then
 * from DefaultAzureCredential.
 */
export interface AzureStoreOptions {
  /** Storage account name. Default: the URL host, else the connection string's AccountName. */
  account?: string;
  container?: string;
  /** Key prefix every key of this store lives under (no leading or trailing `/` needed). */
  prefix?: string;
  /** Blob service endpoint, e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite. Default: `https://<account>.blob.core.windows.net`. */
  endpoint?: string;
  /** A full connection string (AccountName/AccountKey/BlobEndpoint or SharedAccessSignature). */
  connectionString?: string;
  /** Shared account key (base64). Enables presign. */
  accountKey?: string;
  /** SAS token (with or without the leading `?`). */
  sasToken?: string;
  /** Any @azure/identity credential; DefaultAzureCredential is used when nothing else is configured. */
  credential?: AzureTokenCredential;
  /** Bodies up to this many bytes go in one Put Blob; larger ones are staged as blocks. Default 8 MiB. */
  singleShotThreshold?: number;
  /**
   * Bytes per staged block. Default 4 MiB. Azure allows 50 000 blocks per blob: with `size` known
   * the block size is raised to fit; for streams of unknown size it doubles every 10 000 blocks.
   */
  blockSize?: number;
  /** Blocks staged at once per upload. Default 4. Memory per upload is about blockSize × (concurrency + 2). */
  uploadConcurrency?: number;
  /** Parallel single deletes for deleteMany when blob batch cannot be used. Default 16. */
  deleteConcurrency?: number;
  /** Declare that the account keeps blob versions (capabilities.versioning). Default false. */
  versioning?: boolean;
  /**
   * Listing keeps UTF-8 byte order although Azure lists in UTF-16 order; it holds at most this many
   * reordered entries in memory before it re-lists instead (see list-order.ts). Default 10 000.
   */
  listReorderBuffer?: number;
  /** How often a pending server-side copy is polled, ms. Default 500. */
  copyPollIntervalMs?: number;
  /**
   * Send Put Blob, Put Block and Get Blob through the Azure SDK, like every other request, instead
   * of cloudmux's own lighter HTTP client (same headers, same results, more CPU per request). Default
   * false. Azure AD credentials, and endpoints reached through a proxy named in the environment
   * (HTTPS_PROXY, ALL_PROXY, HTTP_PROXY; NO_PROXY honoured as the SDK does), always use the SDK.
   */
  sdkDataPath?: boolean;
  /**
   * Whether each staged block carries a transactional Content-MD5 that Azure checks on arrival.
   * `auto` (default): only over plain `http:`, where nothing else protects the bytes in transit.
   * Over `https:` TLS already authenticates every byte between this process and the service, and
   * the MD5 would cost one more hash pass over every block on each side (about 2 ms per MiB of
   * CPU here) for no added protection; the blob still gets its whole-blob Content-MD5 and
   * `cloudmux_sha256`. `always`: also over TLS (a TLS-terminating proxy on the way); `never`: not
   * even over http. Single-shot puts always carry the MD5 (it is the blob's own, computed anyway).
   */
  blockMd5?: TransportMd5;
}

/** How requests are authenticated, resolved from options, URL and environment. */
export type AzureAuth =
  | { kind: 'sharedKey'; account: string; accountKey: string }
  | { kind: 'sas'; sasToken: string }
  | { kind: 'token'; credential: AzureTokenCredential }
  | { kind: 'defaultCredential' };

export interface ResolvedAzureConfig {
  account: string;
  container: string;
  /**
   * Which credential is used and where it came from, and, for DefaultAzureCredential, what was
   * looked for before it: safe to print (names of options and variables, never values).
   */
  credentialSource: string;
  /** '' or a prefix ending without `/`. */
  prefix: string;
  /** Without a trailing `/`. */
  endpoint: string;
  auth: AzureAuth;
  singleShotThreshold: number;
  blockSize: number;
  uploadConcurrency: number;
  deleteConcurrency: number;
  versioning: boolean;
  listReorderBuffer: number;
  copyPollIntervalMs: number;
  sdkDataPath: boolean;
  /** Staged blocks carry a transactional MD5 (blockMd5 resolved against the endpoint's scheme). */
  blockMd5: boolean;
}

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

const MiB = 1024 * 1024;
/** Azure's Put Block limit. */
export const MAX_BLOCK_SIZE = 4000 * MiB;
/** Azure's committed block limit per blob. */
export const MAX_BLOCKS = 50_000;
/** A stream of unknown size doubles its block size after this many blocks, so 50 000 blocks reach past 1 TiB. */
export const BLOCKS_PER_SIZE_STEP = 10_000;
/** Azure's Put Blob limit. */
export const MAX_SINGLE_SHOT = 5000 * MiB;

/** The parts of a storage connection string cloudmux uses. Keys are matched case-insensitively. */
export interface ConnectionString {
  accountName?: string;
  accountKey?: string;
  blobEndpoint?: string;
  sharedAccessSignature?: string;
}

/** Parses `Key=Value;Key=Value` (values may contain `=`). `UseDevelopmentStorage=true` means Azurite's defaults. */
export function parseConnectionString(cs: string): ConnectionString {
  const fields = new Map<string, string>();
  for (const part of cs.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    fields.set(part.slice(0, i).trim().toLowerCase(), part.slice(i + 1).trim());
  }
  if (fields.get('usedevelopmentstorage')?.toLowerCase() === 'true') {
    // The emulator's well-known public development account.
    return {
      accountName: 'devstoreaccount1',
      accountKey: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
      blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
    };
  }
  const out: ConnectionString = {};
  const accountName = fields.get('accountname');
  if (accountName) out.accountName = accountName;
  const accountKey = fields.get('accountkey');
  if (accountKey) out.accountKey = accountKey;
  const sas = fields.get('sharedaccesssignature');
  if (sas) out.sharedAccessSignature = sas;
  const explicit = fields.get('blobendpoint');
  if (explicit) out.blobEndpoint = explicit;
  else if (accountName) {
    const protocol = fields.get('defaultendpointsprotocol') ?? 'https';
    const suffix = fields.get('endpointsuffix') ?? 'core.windows.net';
    out.blobEndpoint = `${protocol}://${accountName}.blob.${suffix}`;
  }
  return out;
}

/** The account a blob endpoint names: the first path segment for emulator-style URLs, else the host's first label. */
function accountFromEndpoint(endpoint: string): string | undefined {
  try {
    const u = new URL(endpoint);
    const seg = u.pathname.split('/').filter(Boolean)[0];
    if (seg) return seg;
    const label = u.hostname.split('.')[0];
    return label && !/^\d+$/.test(label) && u.hostname.includes('.blob.') ? label : undefined;
  } catch {
    return undefined;
  }
}

function positiveInt(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) throw new InvalidConfigError(`azure option ${name} must be an integer in 1..${max}, got ${value}`, { provider: PROVIDER });
  return value;
}

function validContainer(name: string): boolean {
  return /^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(name);
}

/**
 * Resolves an `az://account/container/prefix?endpoint=…` URL plus options into one config.
 * Credentials are never read from the URL (a URL ends up in logs); the query may carry only
 * `endpoint`. Errors are InvalidConfig and never echo a secret.
 */
export function resolveAzureConfig(url: URL | undefined, options: AzureStoreOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedAzureConfig {
  if (url && (url.username || url.password)) throw new InvalidConfigError('az:// URLs must not carry credentials; pass them as options or environment variables', { provider: PROVIDER });
  if (url) {
    for (const k of url.searchParams.keys()) {
      if (k !== 'endpoint') throw new InvalidConfigError(`unknown az:// URL parameter ${JSON.stringify(k)}; only endpoint is accepted (credentials go in options or the environment)`, { provider: PROVIDER });
    }
  }
  const segments = url ? decodeURIComponent(url.pathname).split('/').filter(Boolean) : [];
  const urlAccount = url?.hostname ? decodeURIComponent(url.hostname) : undefined;
  const container = options.container ?? segments[0];
  const prefix = (options.prefix ?? segments.slice(1).join('/')).replace(/^\/+|\/+$/g, '');
  if (!container) throw new InvalidConfigError('azure store needs a container: az://account/container[/prefix]', { provider: PROVIDER });
  if (!validContainer(container)) throw new InvalidConfigError(`invalid Azure container name ${JSON.stringify(container)}: 3-63 lower-case letters, digits and single hyphens`, { provider: PROVIDER });

  const explicitCs = options.connectionString ? parseConnectionString(options.connectionString) : undefined;
  const explicitProblem = explicitCs && connectionStringProblem(explicitCs, options.connectionString!);
  if (explicitProblem) throw new InvalidConfigError(`options.connectionString is not an Azure Storage connection string: ${explicitProblem}`, { provider: PROVIDER });
  const explicitAccount = explicitCs && csAccount(explicitCs);
  let account = options.account ?? urlAccount ?? explicitAccount;
  if (explicitAccount && account && explicitAccount !== account) {
    throw new InvalidConfigError(`the connection string is for account ${explicitAccount}, but the store names account ${account}`, { provider: PROVIDER });
  }
  // An environment connection string for another account is someone else's; ignore it (and say so
  // if nothing else is found). One that is not a connection string at all is noted the same way.
  const tried: string[] = [];
  const envCsRaw = env.AZURE_STORAGE_CONNECTION_STRING;
  const envCsParsed = envCsRaw ? parseConnectionString(envCsRaw) : undefined;
  const envCsProblem = envCsParsed && connectionStringProblem(envCsParsed, envCsRaw!);
  let envCs: ConnectionString | undefined;
  if (!envCsRaw) tried.push('AZURE_STORAGE_CONNECTION_STRING is not set');
  else if (envCsProblem) tried.push(`AZURE_STORAGE_CONNECTION_STRING is not a storage connection string (${envCsProblem})`);
  else if (account && csAccount(envCsParsed!) !== account) {
    tried.push(`AZURE_STORAGE_CONNECTION_STRING is for ${csAccount(envCsParsed!) ? `account ${csAccount(envCsParsed!)}` : 'an account it does not name'}, not ${account}`);
  } else envCs = envCsParsed;
  const cs = explicitCs ?? envCs;
  const csFrom = explicitCs ? 'options.connectionString' : 'AZURE_STORAGE_CONNECTION_STRING';
  account ??= cs && csAccount(cs);

  let endpoint = options.endpoint ?? url?.searchParams.get('endpoint') ?? cs?.blobEndpoint;
  if (!endpoint && account) endpoint = `https://${account}.blob.core.windows.net`;
  if (!endpoint) throw new InvalidConfigError('azure store needs an account: az://account/container or a connection string', { provider: PROVIDER });
  endpoint = endpoint.replace(/\/+$/, '');
  try {
    const u = new URL(endpoint);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    if (u.search) throw new Error('query');
  } catch {
    throw new InvalidConfigError('azure endpoint must be an http(s) URL without a query', { provider: PROVIDER });
  }
  account ??= accountFromEndpoint(endpoint);
  if (!account) throw new InvalidConfigError('azure store needs an account name', { provider: PROVIDER });

  let auth: AzureAuth;
  let credentialSource: string;
  if (options.credential) [auth, credentialSource] = [{ kind: 'token', credential: options.credential }, 'the Azure AD credential in options.credential'];
  else if (options.accountKey) [auth, credentialSource] = [{ kind: 'sharedKey', account, accountKey: options.accountKey }, `the account key in options.accountKey (account ${account})`];
  else if (options.sasToken) [auth, credentialSource] = [{ kind: 'sas', sasToken: stripQ(options.sasToken) }, 'the SAS in options.sasToken'];
  else if (cs?.accountKey) [auth, credentialSource] = [{ kind: 'sharedKey', account, accountKey: cs.accountKey }, `the account key in ${csFrom} (account ${account})`];
  else if (cs?.sharedAccessSignature) [auth, credentialSource] = [{ kind: 'sas', sasToken: stripQ(cs.sharedAccessSignature) }, `the SAS in ${csFrom}`];
  else if (env.AZURE_STORAGE_KEY) [auth, credentialSource] = [{ kind: 'sharedKey', account, accountKey: env.AZURE_STORAGE_KEY }, `the account key in AZURE_STORAGE_KEY (account ${account})`];
  else if (env.AZURE_STORAGE_SAS_TOKEN) [auth, credentialSource] = [{ kind: 'sas', sasToken: stripQ(env.AZURE_STORAGE_SAS_TOKEN) }, 'the SAS in AZURE_STORAGE_SAS_TOKEN'];
  else {
    if (cs) tried.push(`${csFrom} has neither AccountKey nor SharedAccessSignature`);
    tried.push('no accountKey, sasToken or connectionString option', 'AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN are not set');
    const lookedFor = `no account key or SAS for account ${account}: ${tried.join('; ')}`;
    // Azure AD tokens are refused over plain http (the SDK says "Bearer token authentication is not permitted for non-TLS protected URLs").
    if (endpoint.startsWith('http:')) {
      throw new InvalidConfigError(`azure: ${lookedFor}; and Azure AD (DefaultAzureCredential) cannot be used with the http endpoint ${endpoint}: give a connection string, account key or SAS`, { provider: PROVIDER });
    }
    if (envCsProblem) throw new InvalidConfigError(`azure: ${lookedFor}; fix or unset AZURE_STORAGE_CONNECTION_STRING`, { provider: PROVIDER });
    [auth, credentialSource] = [{ kind: 'defaultCredential' }, `DefaultAzureCredential (Azure AD), as there is ${lookedFor}`];
  }

  const blockSize = positiveInt('blockSize', options.blockSize, 4 * MiB, MAX_BLOCK_SIZE);
  return redactOnInspect({
    account,
    container,
    credentialSource,
    prefix,
    endpoint,
    auth,
    singleShotThreshold: positiveInt('singleShotThreshold', options.singleShotThreshold, 8 * MiB, MAX_SINGLE_SHOT),
    blockSize,
    uploadConcurrency: positiveInt('uploadConcurrency', options.uploadConcurrency, 4, 64),
    deleteConcurrency: positiveInt('deleteConcurrency', options.deleteConcurrency, 16, 256),
    versioning: options.versioning ?? false,
    listReorderBuffer: positiveInt('listReorderBuffer', options.listReorderBuffer, 10_000),
    copyPollIntervalMs: positiveInt('copyPollIntervalMs', options.copyPollIntervalMs, 500),
    sdkDataPath: options.sdkDataPath ?? false,
    blockMd5: md5InTransit(options.blockMd5, endpoint, 'blockMd5', PROVIDER),
  });
}

const CS_FIELDS = new Set([
  'defaultendpointsprotocol', 'accountname', 'accountkey', 'endpointsuffix', 'blobendpoint', 'queueendpoint', 'tableendpoint',
  'fileendpoint', 'sharedaccesssignature', 'usedevelopmentstorage', 'developmentstorageproxyuri',
]);

/** The account a connection string is for: its AccountName, else the account its BlobEndpoint names. */
function csAccount(cs: ConnectionString): string | undefined {
  return cs.accountName ?? (cs.blobEndpoint ? accountFromEndpoint(cs.blobEndpoint) : undefined);
}

/** Why a parsed connection string cannot be used, naming fields but never values; undefined when it can. */
function connectionStringProblem(cs: ConnectionString, raw: string): string | undefined {
  if (cs.accountName || cs.accountKey || cs.sharedAccessSignature || cs.blobEndpoint) {
    if (cs.sharedAccessSignature && !cs.blobEndpoint) return 'SharedAccessSignature without BlobEndpoint or AccountName';
    if (cs.accountKey && !csAccount(cs)) return 'AccountKey without AccountName';
    return undefined;
  }
  // Only names from the connection string vocabulary are echoed: anything else may be a pasted secret.
  const parts = raw.split(';').filter((p) => p.trim());
  const known = parts.map((p) => p.split('=')[0]!.trim()).filter((n) => CS_FIELDS.has(n.toLowerCase()));
  const others = parts.length - known.length;
  const found = [...known, ...(others ? [`${others} part(s) that are not Key=Value fields of a connection string`] : [])];
  return `expected Key=Value pairs separated by ";" with AccountName and AccountKey, or BlobEndpoint and SharedAccessSignature; found ${found.length ? found.join(', ') : 'nothing'}`;
}

function stripQ(sas: string): string {
  return sas.startsWith('?') ? sas.slice(1) : sas;
}
