import { providerLocation } from './locations.js';
import type { BlobStore } from '../core/types.js';
import type { CloudmuxConfig, ResilienceConfig } from '../config/schema.js';
import { resilient, type ResilienceOptions, type ResilientStack } from '../layers/resilient.js';
import { openStore, redactUrl } from '../registry.js';
import { Router } from './router.js';
import { openStateStore } from '../state/index.js';
import type { StateStore } from '../state/types.js';

/** Per-attempt deadline and download stall limit when a provider's config sets none. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 30_000;

/** One configured provider: its driver, its resilience stack and the URL safe to print. */
export interface ProviderStack extends ResilientStack {
  name: string;
  /** The driver without layers. */
  driver: BlobStore;
  /** The provider's URL with credentials masked. */
  url: string;
}

/** Maps a provider's `resilience:` config section onto `resilient()` options. */
export function resilienceOptions(cfg: ResilienceConfig | undefined, name: string): ResilienceOptions {
  const c = cfg ?? {};
  const opts: ResilienceOptions = {
    attemptTimeout: { timeoutMs: c.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS, stallMs: c.stallTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS },
    instrument: { name },
  };
  if (c.operationTimeoutMs !== undefined) opts.operationTimeoutMs = c.operationTimeoutMs;
  if (c.retry !== undefined) opts.retry = c.retry;
  if (c.breaker !== undefined) opts.breaker = c.breaker;
  if (c.rateLimit !== undefined) opts.rateLimit = c.rateLimit;
  return opts;
}

/**
 * Opens every provider a config names, each wrapped in its resilience stack (instrumented under
 * the provider's configured name). Opening does no I/O. If one fails, those already open are closed.
 */
export async function openProviderStacks(config: CloudmuxConfig): Promise<ProviderStack[]> {
  const stacks: ProviderStack[] = [];
  try {
    for (const p of config.providers) {
      const driver = await openStore(p.url, p.options);
      stacks.push({ ...resilient(driver, resilienceOptions(p.resilience, p.name)), name: p.name, driver, url: redactUrl(p.url) });
    }
  } catch (e) {
    await Promise.allSettled(stacks.map((s) => s.store.close()));
    throw e;
  }
  return stacks;
}

export interface OpenRouterOptions {
  /** A state store to use instead of the one the config names (it is then not closed by the router). */
  state?: StateStore;
  /** Provider stacks already open (from {@link openProviderStacks}); default: opened here. */
  stacks?: ProviderStack[];
  /**
   * router.close() closes the providers and the state store (default true). Pass false when you
   * pass your own `state` or `stacks` and close them yourself.
   */
  closeResources?: boolean;
}

/**
 * A Router built from a config file's content: the providers with their resilience stacks, the
 * policies, health settings and the state store the config names. The app and the daemon call
 * this with the same config so that they share one catalog and outbox.
 */
export async function openRouter(config: CloudmuxConfig, opts: OpenRouterOptions = {}): Promise<Router> {
  const stacks = opts.stacks ?? await openProviderStacks(config);
  let state: StateStore | undefined = opts.state;
  try {
    state ??= await openStateStore(config.state);
    return new Router({
      providers: stacks.map((s) => {
        const p = config.providers.find((x) => x.name === s.name)!;
        const location = providerLocation(p);
        return { name: s.name, store: s.store, prices: p.prices, weight: p.weight, ...(location ? { location } : {}), ...(s.breaker ? { breaker: s.breaker } : {}) };
      }),
      state,
      policies: config.policies,
      health: config.health,
      location: config.router.location,
      ...(config.router.copyOnRead ? { copyOnRead: config.router.copyOnRead } : {}),
      closeResources: opts.closeResources ?? true,
      ...(config.transfers?.priority ? { priority: config.transfers.priority } : {}),
    });
  } catch (e) {
    if (!opts.stacks) await Promise.allSettled(stacks.map((s) => s.store.close()));
    if (!opts.state) await state?.close();
    throw e;
  }
}
