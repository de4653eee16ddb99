import { readFileSync, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as Yaml from 'yaml';
import type { z } from 'zod';
import { InvalidConfigError, type CloudmuxError } from '../core/errors.js';
import { isSecretName, redactOnInspect } from '../core/redact.js';
import { CONFIG_VERSION, configSchema, pricesSchema, type CloudmuxConfig, type Prices, type PricesInput, type RawConfig } from './schema.js';

let yamlModule: typeof Yaml | undefined;

/** The yaml package, loaded by the first parse so that importing cloudmux does not pay for it. */
function yaml(): typeof Yaml {
  yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yamlModule;
}

export interface ParseConfigOptions {
  /** Shown in error messages (a file name). */
  source?: string;
  /** Where `${VAR}` references are looked up (default: process.env). */
  env?: Record<string, string | undefined>;
  /** Price table to resolve `prices.use` against (default: config/prices.yaml shipped with cloudmux). */
  priceTable?: Record<string, PricesInput>;
}

/**
 * Reads a YAML or JSON config file, validates it and resolves env references and prices.
 * Every problem is reported at once in one InvalidConfig whose message names each exact path
 * (`policies[1].writeQuorum`) and what was expected. Values are never echoed (they may be secrets).
 */
export async function loadConfig(file: string, opts: Omit<ParseConfigOptions, 'source'> = {}): Promise<CloudmuxConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new InvalidConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  return parseConfigText(text, { ...opts, source: file });
}

/** {@link loadConfig} for text already in memory (YAML; JSON is valid YAML). */
export function parseConfigText(text: string, opts: ParseConfigOptions = {}): CloudmuxConfig {
  const doc = yaml().parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => `  ${e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}: ` : ''}${e.message.split('\n')[0]}`);
    throw new InvalidConfigError(`${opts.source ?? 'config'} is not valid YAML/JSON:\n${lines.join('\n')}`);
  }
  return parseConfig(doc.toJS(), opts);
}

/** Validates a config object (already parsed from YAML/JSON) and resolves env references and prices. */
export function parseConfig(input: unknown, opts: ParseConfigOptions = {}): CloudmuxConfig {
  const where = opts.source ?? 'config';
  // Before the schema: a newer file may hold keys this version does not know, and that is the news.
  const version = (input as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && version > CONFIG_VERSION) {
    throw new InvalidConfigError(`${where} is config version ${version}, newer than this cloudmux understands (${CONFIG_VERSION}); upgrade cloudmux`);
  }
  const result = configSchema.safeParse(input);
  if (!result.success) throw configError(where, result.error.issues.map(describeIssue));
  const raw = result.data;
  const problems: string[] = [];
  checkSecretsAreReferences(raw, problems);
  const env = opts.env ?? process.env;
  const resolved = resolveEnvRefs(raw, [], env, problems) as RawConfig;
  const table = { ...(opts.priceTable ?? defaultPriceTable()), ...(raw.priceTable ?? {}) };
  const providers = resolved.providers.map((p, i) => ({ ...p, prices: resolvePrices(p.prices, p.url, i, table, problems) }));
  if (problems.length > 0) throw configError(where, problems);
  // The resolved secrets are for the drivers; console.log(config) shows them redacted.
  return redactOnInspect({ ...resolved, providers }, { deep: true });
}

function configError(where: string, problems: string[]): CloudmuxError {
  return new InvalidConfigError(`invalid ${where}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
}

/** `providers[1].prices.storageGbMonth` */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_$][\w$]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out || '(top level)';
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = formatPath(issue.path);
  switch (issue.code) {
    case 'invalid_type':
      return `${path}: expected ${issue.expected}${issue.message.includes('received undefined') ? ' (missing)' : ''}`;
    case 'unrecognized_keys':
      return `${path}: unknown ${issue.keys.length === 1 ? 'key' : 'keys'} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    case 'invalid_value':
      return `${path}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}`;
    case 'invalid_union':
      return `${path}: expected ${path === 'state' ? '{ sqlite: { path } } or { postgres: { url } }' : 'one of the allowed shapes'}`;
    default:
      return `${path}: ${issue.message}`;
  }
}

/** `${VAR}`, `${VAR:-default}`, or `${file:/run/secrets/x}` (the file's content, trailing newline dropped). */
const REF = /\$\{(?:file:([^}]+)|([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?)\}/g;

/** Secrets may only be written as `${ENV}` or `${file:PATH}` references, so config files can be committed. */
function checkSecretsAreReferences(cfg: RawConfig, problems: string[]): void {
  const visit = (value: unknown, path: (string | number)[]): void => {
    if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        const p = [...path, Array.isArray(value) ? Number(k) : k];
        if (typeof v === 'string' && isSecretName(k) && !/\$\{[A-Za-z_]/.test(v)) {
          problems.push(`${formatPath(p)}: a secret must be an environment reference like "\${MY_SECRET}", not a literal value`);
        } else visit(v, p);
      }
    }
  };
  cfg.providers.forEach((p, i) => {
    visit(p.options, ['providers', i, 'options']);
    checkUrlPassword(p.url, ['providers', i, 'url'], problems);
  });
  if (cfg.state && 'postgres' in cfg.state) checkUrlPassword(cfg.state.postgres.url, ['state', 'postgres', 'url'], problems);
}

function checkUrlPassword(url: string, path: (string | number)[], problems: string[]): void {
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/@]*:([^/@]*)@/i.exec(url);
  if (m && m[1] && !/^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(m[1])) {
    problems.push(`${formatPath(path)}: the password in a URL must be an environment reference like "\${PGPASSWORD}", not a literal value`);
  }
}

/** Replaces `${VAR}`, `${VAR:-default}` and `${file:PATH}` in every string; a missing variable or file is a problem at its path. */
function resolveEnvRefs(value: unknown, path: (string | number)[], env: Record<string, string | undefined>, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(REF, (_all, file: string | undefined, name: string, fallback: string | undefined) => {
      if (file !== undefined) {
        try {
          return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
        } catch (e) {
          problems.push(`${formatPath(path)}: cannot read secret file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
          return '';
        }
      }
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      problems.push(`${formatPath(path)}: environment variable ${name} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => resolveEnvRefs(v, [...path, i], env, problems));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = resolveEnvRefs(v, [...path, k], env, problems);
    return out;
  }
  return value;
}

const SCHEME_PRICES: Record<string, string> = { 's3:': 's3-standard', 'gs:': 'gcs-standard', 'az:': 'azure-hot' };
const FREE: Prices = { storageGbMonth: 0, egressInternetGb: 0, egressToGb: {}, classAPer1k: 0, classBPer1k: 0 };

function resolvePrices(given: PricesInput, url: string, index: number, table: Record<string, PricesInput>, problems: string[]): Prices {
  const scheme = /^([a-z][a-z0-9+.-]*:)/i.exec(url)?.[1]?.toLowerCase() ?? '';
  // memory:// and file:// cost nothing unless told otherwise; cloud schemes start from their list prices.
  const use = given.use ?? SCHEME_PRICES[scheme];
  let base: PricesInput = use === undefined ? FREE : {};
  if (use !== undefined) {
    const entry = table[use];
    if (!entry) {
      problems.push(`providers[${index}].prices.use: unknown price-table entry "${use}"; expected one of: ${Object.keys(table).join(', ')}`);
      return FREE;
    }
    base = entry;
  }
  const merged = { ...base, ...stripUndefined(given), egressToGb: { ...(base.egressToGb ?? {}), ...(given.egressToGb ?? {}) } };
  const out = { ...FREE, egressToGb: merged.egressToGb };
  for (const field of ['storageGbMonth', 'egressInternetGb', 'classAPer1k', 'classBPer1k'] as const) {
    const v = merged[field];
    if (typeof v !== 'number') problems.push(`providers[${index}].prices.${field}: missing; expected a number ($) or prices.use naming a price-table entry`);
    else out[field] = v;
  }
  for (const field of ['egressInterRegionGb', 'retrievalGb', 'minStorageDays'] as const) {
    const v = merged[field];
    if (typeof v === 'number') out[field] = v;
  }
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

let cachedTable: Record<string, PricesInput> | undefined;

/** The price table shipped in config/prices.yaml (looked up next to the source and the build). */
export function defaultPriceTable(): Record<string, PricesInput> {
  if (cachedTable) return cachedTable;
  const candidates = ['../../config/prices.yaml', '../../../config/prices.yaml'].map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
  const file = candidates.find((c) => existsSync(c));
  if (!file) throw new InvalidConfigError(`config/prices.yaml not found (looked at ${candidates.join(', ')})`);
  const doc = yaml().parseDocument(readFileSync(file, 'utf8')).toJS() as Record<string, Record<string, unknown>>;
  const table: Record<string, PricesInput> = {};
  for (const [name, entry] of Object.entries(doc)) {
    const { description: _d, sources: _s, ...figures } = entry;
    const parsed = pricesSchema.safeParse(figures);
    if (!parsed.success) throw new InvalidConfigError(`${file}: entry ${name}: ${parsed.error.issues.map(describeIssue).join('; ')}`);
    table[name] = parsed.data;
  }
  cachedTable = table;
  return table;
}
