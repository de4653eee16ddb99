import { z } from 'zod';
import { LOCATION_PATTERN, providerLocation } from '../router/locations.js';
import { BandwidthTimetable } from '../layers/bandwidth-timetable.js';
import { prioritySchema } from './priority-schema.js';
import { syncConfigSchema } from './sync-schema.js';

export { priorityRuleSchema, prioritySchema } from './priority-schema.js';

/**
 * The cloudmux configuration file (YAML or JSON), shared by the library, the CLI and the daemon.
 * Secrets appear only as `${ENV_VAR}` references; {@link loadConfig} resolves them after validation.
 */

const nonNegative = z.number().nonnegative();

/** Price figures in US dollars. Any field may be left out when `use` names a price-table entry. */
export const pricesSchema = z.strictObject({
  /** Entry of config/prices.yaml (or of `priceTable`) this provider's prices start from. */
  use: z.string().min(1).optional(),
  /** $ per GB-month stored. */
  storageGbMonth: nonNegative.optional(),
  /** $ per GB read out to the internet (where cloudmux runs, unless `router.location` says otherwise). */
  egressInternetGb: nonNegative.optional(),
  /** $ per GB sent to another configured provider; absent entries cost the internet rate. */
  egressToGb: z.record(z.string(), nonNegative).optional(),
  /** $ per 1,000 class-A requests (writes, lists). */
  classAPer1k: nonNegative.optional(),
  /** $ per 1,000 class-B requests (reads). */
  classBPer1k: nonNegative.optional(),
  /** $ per GB to another region of the same cloud (absent: the internet rate applies). */
  egressInterRegionGb: nonNegative.optional(),
  /** $ per GB read back (infrequent-access storage classes charge it; standard classes do not). */
  retrievalGb: nonNegative.optional(),
  /** An object deleted or overwritten sooner is billed as if stored this many days (IA: 30, archive: 90+). */
  minStorageDays: nonNegative.optional(),
});


const positiveMs = z.number().int().positive();

/**
 * The resilience stack around one provider (`resilient()` in src/layers): every field optional,
 * `false` turns a layer off. Unset fields take the layers' documented defaults, except the
 * per-attempt deadline, which openRouter sets to 30 s so a hung connection cannot hang a copy.
 */
export const resilienceSchema = z.strictObject({
  /** Whole-operation deadline, retries and waits included. */
  operationTimeoutMs: positiveMs.optional(),
  /** Deadline of one attempt (until a response, or each listing page). Default 30 000. */
  attemptTimeoutMs: positiveMs.optional(),
  /** Longest wait for the next byte of a download while its reader waits. Default 30 000. */
  stallTimeoutMs: positiveMs.optional(),
  retry: z.union([z.literal(false), z.strictObject({
    retries: z.number().int().nonnegative().optional(),
    baseDelayMs: positiveMs.optional(),
    maxDelayMs: positiveMs.optional(),
    budgetMs: positiveMs.optional(),
    maxRetryAfterMs: z.number().int().nonnegative().optional(),
  })]).optional(),
  breaker: z.union([z.literal(false), z.strictObject({
    errorThresholdPercentage: z.number().min(1).max(100).optional(),
    volumeThreshold: z.number().int().positive().optional(),
    resetTimeoutMs: positiveMs.optional(),
    rollingWindowMs: positiveMs.optional(),
    rollingBuckets: z.number().int().positive().optional(),
  })]).optional(),
  /** Token buckets per provider: requests/s and body bytes/s. */
  rateLimit: z.strictObject({
    opsPerSec: z.number().positive().optional(),
    bytesPerSec: z.number().positive().optional(),
    readBytesPerSec: z.number().positive().optional(),
    writeBytesPerSec: z.number().positive().optional(),
  }).optional(),
});

export const providerSchema = z.strictObject({
  /** Unique name used in policies, the catalog and metrics: `[a-z][a-z0-9_-]*`. */
  name: z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, 'a provider name is [a-z][a-z0-9_-]*, at most 63 characters'),
  /** Store URL (`s3://bucket/prefix`, `gs://bucket`, `az://account/container`, `file:///dir`, `memory://`). */
  url: z.string().min(1),
  /** Driver options (endpoint, credentials by `${ENV}` reference, …), passed to the driver as given. */
  options: z.record(z.string(), z.unknown()).optional(),
  /** The provider's region; with the URL scheme's cloud it gives the default `location` (src/router/locations.ts). */
  region: z.string().optional(),
  /**
   * Where the provider's bytes live, `cloud:region` (`aws:us-east-1`). Egress between two providers
   * in one location is free, between regions of one cloud costs `egressInterRegionGb`. Default:
   * the URL scheme's cloud (s3→aws, gs→gcp, az→azure) and `region`, when both are known.
   */
  location: z.string().regex(LOCATION_PATTERN, 'a location is cloud:region, e.g. aws:us-east-1').optional(),
  /** Tie-breaker between equally priced providers: higher is preferred. */
  weight: z.number().positive().default(1),
  prices: pricesSchema.default({}),
  /** Resilience settings for this provider's layers (see {@link resilienceSchema}). */
  resilience: resilienceSchema.optional(),
});

export const hedgeSchema = z.strictObject({
  /** Send a second read when the first has not answered after this percentile of its latency (50–99.9). */
  afterPercentile: z.number().min(50).max(99.9).default(95),
  /** At most this fraction of reads may be hedged (0–1), so hedging cannot double the load. */
  budget: z.number().min(0).max(1).default(0.1),
});

export const policySchema = z.strictObject({
  /** Keys starting with this use the policy; the longest matching prefix wins; `""` is the default. */
  prefix: z.string().default(''),
  /** Providers that hold every object (N). */
  replicas: z.number().int().min(1).default(1),
  /** Acknowledgements before put returns (W ≤ N); the other N−W are owed to the outbox. */
  writeQuorum: z.number().int().min(1).default(1),
  read: z.enum(['cheapest', 'fastest', 'primary']).default('cheapest'),
  hedge: hedgeSchema.optional(),
  /** Providers that must hold a copy (data residency). Listed first when reads use `primary`. */
  pin: z.array(z.string()).default([]),
  /** Restrict placement to these providers (default: all). Also the probe order for unknown keys. */
  providers: z.array(z.string()).optional(),
  /** Serve a stale replica (marked `stale`) when no provider holding the current version is up. */
  allowStaleReads: z.boolean().default(false),
  /** Adopt keys found on a provider but unknown to the catalog (written before cloudmux). */
  adoptUnknown: z.boolean().default(true),
  /**
   * Rank providers for a new object by storage + request + the upload's egress from where the
   * router runs (`router.location`), so objects land near their writer (docs/cost.md: write-local).
   * Default false: storage + request only.
   */
  writeLocal: z.boolean().default(false),
});

export const stateSchema = z.union([
  z.strictObject({
    sqlite: z.strictObject({
      path: z.string().min(1),
      /** `normal`: WAL with synchronous=NORMAL (a power loss may drop the last commits, never corrupts); `full`: fsync every commit. */
      durability: z.enum(['normal', 'full']).default('full'),
    }),
  }),
  z.strictObject({
    postgres: z.strictObject({
      /** Connection URL; put the password in an env var: `postgres://user:${PGPASSWORD}@host/db`. */
      url: z.string().min(1),
      schema: z.string().regex(/^[a-z_][a-z0-9_]*$/).max(63).default('cloudmux'),
      /** Connections in each process's pool (default 10). */
      maxConnections: z.number().int().positive().optional(),
      /** Give up connecting after this many ms (default 10000). */
      connectTimeoutMs: z.number().int().positive().optional(),
    }),
  }),
]);

export const healthSchema = z.strictObject({
  /** Canary put/get/delete on each provider every this many ms; 0 disables probes. */
  probeIntervalMs: z.number().int().nonnegative().default(15_000),
  /** Key prefix for canary objects. */
  probePrefix: z.string().default('cloudmux-probe'),
  /** Rolling window for error rates. */
  windowMs: z.number().int().positive().default(30_000),
  /** Error rate at or above which a provider is degraded / down. */
  degradedErrorRate: z.number().min(0).max(1).default(0.1),
  downErrorRate: z.number().min(0).max(1).default(0.5),
  /** Fewest requests in the window before the error rate counts. */
  minRequests: z.number().int().positive().default(5),
  /** p95 latency above which a provider is degraded; 0 disables. */
  degradedP95Ms: z.number().nonnegative().default(0),
  /** Consecutive good evaluations before a state improves (hysteresis). */
  recoverAfter: z.number().int().positive().default(3),
});

/** Adaptive concurrency (AIMD) bounds and tuning; see AdaptiveConcurrency for each default. */
export const adaptiveSchema = z.strictObject({
  min: z.number().int().positive().optional(),
  max: z.number().int().positive().optional(),
  initial: z.number().int().positive().optional(),
  windowMs: z.number().int().positive().optional(),
  increase: z.number().positive().optional(),
  /** Multiplier on a throttle or latency rise, in (0, 1). */
  decrease: z.number().gt(0).lt(1).optional(),
  latencyTolerance: z.number().gt(1).optional(),
  maxEventLoopLagMs: z.number().positive().optional(),
  /** Double per window until the first cut (TCP slow start), then additive. */
  slowStart: z.boolean().optional(),
}).refine((a) => a.min === undefined || a.max === undefined || a.min <= a.max, { message: 'adaptive.min must not exceed adaptive.max' });

/** How transfers are ordered and paced: priority classes, metered links, bandwidth (see docs/transfers.md). */
export const transfersSchema = z.strictObject({
  priority: prioritySchema.optional(),
  /** A metered link: the replication worker (and `migrate --config`) move only critical objects. */
  metered: z.boolean().default(false),
  /** The replication worker's bandwidth, and `--bwlimit` for `migrate --config` runs: `10M`, `10M:1M`, `"08:00,1M 19:00,off"`. */
  bwlimit: z.string().superRefine((v, ctx) => {
    try {
      BandwidthTimetable.parse(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  }).optional(),
});

export const replicationSchema = z.strictObject({
  /** Copies in flight (in all, with `adaptive`). */
  concurrency: z.number().int().positive().default(4),
  /** Adaptive concurrency per destination provider within `concurrency`; absent: fixed. */
  adaptive: adaptiveSchema.optional(),
  /** Attempts before an entry is dead-lettered with its last error. */
  maxAttempts: z.number().int().positive().default(8),
  backoffBaseMs: z.number().int().positive().default(1_000),
  backoffMaxMs: z.number().int().positive().default(5 * 60_000),
  /** How long a claimed entry stays leased to one worker. */
  leaseMs: z.number().int().positive().default(5 * 60_000),
  pollIntervalMs: z.number().int().positive().default(1_000),
  verify: z.enum(['auto', 'sha256', 'native', 'size-only']).default('sha256'),
});

/** The anti-entropy scan of the daemon: catalog against providers, a rolling slice of keys at a time. */
export const scanSchema = z.strictObject({
  /** One slice every this many ms; 0 disables the scan. */
  intervalMs: z.number().int().nonnegative().default(60_000),
  /** Catalog keys per slice. */
  batchSize: z.number().int().positive().max(100_000).default(500),
  /** `size`: listings only; `metadata`: also head each replica and compare its recorded SHA-256. */
  compare: z.enum(['size', 'metadata']).default('metadata'),
  /** Differences on objects changed more recently than this are left for the next pass (a write may be in flight). */
  settleMs: z.number().int().nonnegative().default(60_000),
  /** With a PostgreSQL state: key ranges the daemons sharing it divide the scan into (each key checked once per cycle). */
  ranges: z.number().int().positive().max(10_000).default(16),
  /** With a PostgreSQL state: how long a daemon holds a scan range between its slices; a dead daemon's range is taken over after it. */
  leaseMs: z.number().int().positive().default(5 * 60_000),
});

/** Forgetting old tombstones (deleted keys with nothing owed), by one daemon at a time (the leader, with a PostgreSQL state). */
export const tombstonesSchema = z.strictObject({
  /** How often; 0: never. */
  pruneIntervalMs: z.number().int().nonnegative().default(60 * 60_000),
  /** Tombstones younger than this are kept (a replica that was down this long still learns of the delete). */
  retainMs: z.number().int().positive().default(7 * 24 * 60 * 60_000),
  /** How often a follower tries to become leader (and so how soon one takes over from a leader that died). */
  leaderCheckMs: z.number().int().positive().default(5_000),
});

/**
 * Garbage collection of a chunked tree (`cp`/`migrate --chunked`) kept on a provider, run by the
 * daemon (the leader, with a PostgreSQL state) as `cloudmux gc` would. The manifests must be
 * readable without keys: for an encrypted chunked tree run `cloudmux gc` with the keys instead.
 */
export const chunkGcSchema = z.strictObject({
  /** A provider name of `providers`. */
  provider: z.string().min(1),
  /** Where the chunks are (default `.cmx-chunks/`). */
  chunkPrefix: z.string().regex(/.\/$/, 'must end with /').optional(),
  /** One collection every this many ms (after the previous ended). Default a day. */
  intervalMs: z.number().int().positive().default(24 * 60 * 60_000),
  /** Unreferenced chunks younger than this are kept (a chunked put may be writing them). At least an hour; default a day; never shorter than the writers'. */
  graceMs: z.number().int().min(60 * 60_000, 'graceMs under an hour is unsafe while chunked puts run; use `cloudmux gc --grace` for an offline collection').default(24 * 60 * 60_000),
});

export const daemonSchema = z.strictObject({
  /** HTTP endpoints (/healthz, /readyz, /metrics, /status). Loopback by default: /status names providers. */
  listen: z.strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65_535).default(9464),
  }).default({ host: '127.0.0.1', port: 9464 }),
  /** Time in-flight copies get to finish on SIGTERM or reload before they are aborted and re-queued. */
  shutdownGraceMs: z.number().int().nonnegative().default(10_000),
  /** Deadline of one canary probe (put, get, delete). */
  probeTimeoutMs: positiveMs.default(10_000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  scan: scanSchema.default(scanSchema.parse({})),
  tombstones: tombstonesSchema.default(tombstonesSchema.parse({})),
  chunkGc: z.array(chunkGcSchema).default([]),
});

/**
 * Copy on read at the router's location (docs/cost.md, "Copy on read in the router"): the settings,
 * `true` for the defaults, `false` or absent for off. Needs `router.location`.
 */
export const copyOnReadSchema = z.preprocess((v) => (v === true ? {} : v === false ? undefined : v), z.strictObject({
  /** How long a copy lives after each read of it: `t-even` (default: the break-even time), `adaptive`, or seconds (0: never copy). */
  ttl: z.union([z.enum(['t-even', 'adaptive']), z.number().nonnegative()]).default('t-even'),
  /** The provider that takes the copies (default: the cheapest-storage provider at `router.location`). */
  cacheProvider: z.string().min(1).optional(),
  /** Where copies live on it: `<keyPrefix>v<version>/<key>` (default `cloudmux-cache/`). */
  keyPrefix: z.string().min(1).optional(),
}).optional());

/** The config file format this cloudmux reads and writes; a file with a higher `version` is refused. */
export const CONFIG_VERSION = 1;

export const configSchema = z.strictObject({
  /** Format version of the file (absent: 1). */
  version: z.number().int().positive().optional(),
  providers: z.array(providerSchema).min(1, 'at least one provider is needed'),
  policies: z.array(policySchema).default([{ prefix: '', replicas: 1, writeQuorum: 1, read: 'cheapest', pin: [], allowStaleReads: false, adoptUnknown: true, writeLocal: false }]),
  state: stateSchema.optional(),
  router: z.strictObject({
    /**
     * Where cloudmux runs: a provider name (egress from it is free; from others it costs their
     * egressToGb to it), or a location `cloud:region` (`aws:us-east-1`): reads then go to the
     * replica cheapest to move there, by each provider's `location` (see providers[].location).
     */
    location: z.string().optional(),
    /** Copy on read at `location` (off by default); see {@link copyOnReadSchema}. */
    copyOnRead: copyOnReadSchema.optional(),
  }).default({}),
  health: healthSchema.default(healthSchema.parse({})),
  replication: replicationSchema.default(replicationSchema.parse({})),
  transfers: transfersSchema.default(transfersSchema.parse({})),
  /** Settings of `cloudmux daemon` (ignored by the library and the other commands). */
  daemon: daemonSchema.default(daemonSchema.parse({})),
  /** Settings of `cloudmux sync`: device profiles (ignored by the other commands). */
  sync: syncConfigSchema.optional(),
  /** Extra price-table entries (merged over config/prices.yaml). */
  priceTable: z.record(z.string(), pricesSchema.omit({ use: true })).optional(),
}).superRefine((cfg, ctx) => {
  const names = new Map<string, number>();
  cfg.providers.forEach((p, i) => {
    const first = names.get(p.name);
    if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['providers', i, 'name'], message: `duplicate provider name "${p.name}" (also providers[${first}])` });
    else names.set(p.name, i);
  });
  const known = (n: string): boolean => names.has(n);
  const list = [...names.keys()].join(', ');
  cfg.providers.forEach((p, i) => {
    for (const to of Object.keys(p.prices.egressToGb ?? {})) {
      if (!known(to)) ctx.addIssue({ code: 'custom', path: ['providers', i, 'prices', 'egressToGb', to], message: `unknown provider "${to}"; expected one of: ${list}` });
    }
  });
  if (cfg.router.location !== undefined && !known(cfg.router.location) && !LOCATION_PATTERN.test(cfg.router.location)) {
    ctx.addIssue({ code: 'custom', path: ['router', 'location'], message: `unknown provider "${cfg.router.location}"; expected one of: ${list}, or a location cloud:region (e.g. aws:us-east-1)` });
  }
  const cor = cfg.router.copyOnRead;
  if (cor) {
    const cache = typeof cor === 'object' ? cor.cacheProvider : undefined;
    const at = cfg.router.location;
    if (at === undefined) {
      ctx.addIssue({ code: 'custom', path: ['router', 'copyOnRead'], message: 'copy on read needs router.location (where this router runs: a provider name or cloud:region, e.g. gcp:europe-west1)' });
    } else if (cache !== undefined && !known(cache)) {
      ctx.addIssue({ code: 'custom', path: ['router', 'copyOnRead', 'cacheProvider'], message: `unknown provider "${cache}"; expected one of: ${list}` });
    } else if (cache === undefined && !known(at) && !cfg.providers.some((p) => providerLocation(p) === at)) {
      ctx.addIssue({ code: 'custom', path: ['router', 'copyOnRead'], message: `no provider is at ${at} to take the copies (see providers[].location and region); name one with cacheProvider` });
    }
  }
  cfg.daemon.chunkGc.forEach((g, i) => {
    if (!known(g.provider)) ctx.addIssue({ code: 'custom', path: ['daemon', 'chunkGc', i, 'provider'], message: `unknown provider "${g.provider}"; expected one of: ${list}` });
  });
  const prefixes = new Map<string, number>();
  cfg.policies.forEach((pol, i) => {
    const first = prefixes.get(pol.prefix);
    if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['policies', i, 'prefix'], message: `duplicate policy prefix "${pol.prefix}" (also policies[${first}])` });
    else prefixes.set(pol.prefix, i);
    if (pol.writeQuorum > pol.replicas) {
      ctx.addIssue({ code: 'custom', path: ['policies', i, 'writeQuorum'], message: `writeQuorum ${pol.writeQuorum} is more than replicas ${pol.replicas}; expected 1..${pol.replicas}` });
    }
    const eligible = pol.providers ?? [...names.keys()];
    pol.providers?.forEach((n, j) => {
      if (!known(n)) ctx.addIssue({ code: 'custom', path: ['policies', i, 'providers', j], message: `unknown provider "${n}"; expected one of: ${list}` });
    });
    pol.pin.forEach((n, j) => {
      if (!known(n)) ctx.addIssue({ code: 'custom', path: ['policies', i, 'pin', j], message: `unknown provider "${n}"; expected one of: ${list}` });
      else if (!eligible.includes(n)) ctx.addIssue({ code: 'custom', path: ['policies', i, 'pin', j], message: `pinned provider "${n}" is not in this policy's providers` });
    });
    if (pol.pin.length > pol.replicas) {
      ctx.addIssue({ code: 'custom', path: ['policies', i, 'pin'], message: `${pol.pin.length} pinned providers but only ${pol.replicas} replicas; expected at most ${pol.replicas}` });
    }
    if (pol.replicas > eligible.length) {
      ctx.addIssue({ code: 'custom', path: ['policies', i, 'replicas'], message: `replicas ${pol.replicas} but only ${eligible.length} providers are eligible; expected at most ${eligible.length}` });
    }
  });
  if (!prefixes.has('')) {
    ctx.addIssue({ code: 'custom', path: ['policies'], message: 'no default policy; expected one policy with prefix "" (or none at all)' });
  }
});

export type PricesInput = z.infer<typeof pricesSchema>;
export type ProviderConfig = z.infer<typeof providerSchema>;
export type PolicyConfig = z.infer<typeof policySchema>;
export type HedgeConfig = z.infer<typeof hedgeSchema>;
export type StateConfig = z.infer<typeof stateSchema>;
export type HealthConfig = z.infer<typeof healthSchema>;
export type ReplicationConfig = z.infer<typeof replicationSchema>;
export type ResilienceConfig = z.infer<typeof resilienceSchema>;
export type ScanConfig = z.infer<typeof scanSchema>;
export type TransfersConfig = z.infer<typeof transfersSchema>;
export type PriorityConfig = z.infer<typeof prioritySchema>;
export type DaemonConfig = z.infer<typeof daemonSchema>;
/** A validated configuration, before price references are resolved. */
export type RawConfig = z.infer<typeof configSchema>;

/** Complete prices of one provider, every figure known. */
export interface Prices {
  storageGbMonth: number;
  egressInternetGb: number;
  egressToGb: Record<string, number>;
  classAPer1k: number;
  classBPer1k: number;
  /** $ per GB to another region of the same cloud; absent: `egressInternetGb`. */
  egressInterRegionGb?: number;
  /** $ per GB read (infrequent-access classes); absent: 0. */
  retrievalGb?: number;
  /** Minimum billed storage duration in days; absent: 0. */
  minStorageDays?: number;
}

/** A validated configuration with every `${ENV}` resolved and every provider's prices complete. */
export type CloudmuxConfig = Omit<RawConfig, 'providers'> & {
  providers: (Omit<ProviderConfig, 'prices'> & { prices: Prices })[];
};
