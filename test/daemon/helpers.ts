import { setTimeout as sleep } from 'node:timers/promises';
import { TransientError, abortedError } from '../../src/core/index.js';
import type {
  BlobStore, Body, CopyOptions, DeleteManyResult, GetOptions, GetResult, ListItem, ListOptions, ObjectMeta, PutOptions, SignalOptions,
  UpdateMetadataOptions,
} from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { registerScheme } from '../../src/registry.js';
import { MemoryStore } from '../../providers/memory/index.js';

/**
 * A memory store that can be "unplugged" (every call fails as a refused connection would) and
 * whose puts can be held until their signal aborts, so tests can catch a copy in flight.
 */
export class SwitchableStore extends ForwardingStore {
  protected readonly layerName = 'Switchable';
  down = false;
  /** While true, puts wait before writing anything until released or aborted. */
  holdPuts = false;
  /** Options the registry passed when the store was opened (to check they arrive resolved). */
  openedWith: Record<string, unknown> | undefined;
  readonly memory: MemoryStore;
  heldPuts = 0;

  constructor(name: string) {
    const memory = new MemoryStore({ name });
    super(memory);
    this.memory = memory;
  }

  private check(): void {
    if (this.down) throw new TransientError('connect ECONNREFUSED (switched off by the test)', { provider: 'switch' });
  }

  override async put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    this.check();
    if (this.holdPuts) {
      this.heldPuts++;
      while (this.holdPuts) {
        if (opts?.signal?.aborted) throw abortedError(opts.signal, { provider: 'switch', key });
        await sleep(10);
      }
    }
    this.check();
    return super.put(key, body, opts);
  }

  override async get(key: string, opts?: GetOptions): Promise<GetResult> {
    this.check();
    return super.get(key, opts);
  }

  override async head(key: string, opts?: SignalOptions): Promise<ObjectMeta> {
    this.check();
    return super.head(key, opts);
  }

  override async delete(key: string, opts?: SignalOptions): Promise<void> {
    this.check();
    return super.delete(key, opts);
  }

  override async deleteMany(keys: Iterable<string>, opts?: SignalOptions): Promise<DeleteManyResult> {
    this.check();
    return super.deleteMany(keys, opts);
  }

  override async *list(opts?: ListOptions): AsyncGenerator<ListItem> {
    this.check();
    yield* super.list(opts);
  }

  override async copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta> {
    this.check();
    return super.copy(src, dst, opts);
  }

  override async updateMetadata(key: string, opts: UpdateMetadataOptions): Promise<ObjectMeta> {
    this.check();
    return super.updateMetadata(key, opts);
  }
}

const switches = new Map<string, SwitchableStore>();

/** `switch://name` opens the same SwitchableStore for the same name in this process. */
registerScheme('switch', (url, options) => {
  const s = switchable(url.host);
  s.openedWith = options;
  return s;
});

export function switchable(name: string): SwitchableStore {
  let s = switches.get(name);
  if (!s) {
    s = new SwitchableStore(name);
    switches.set(name, s);
  }
  return s;
}

/** Polls until `cond` holds (or fails after `timeoutMs`, saying what it waited for). */
export async function waitFor<T>(what: string, cond: () => T | Promise<T>, timeoutMs = 15_000, everyMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Everything pino wrote, one parsed object per line. */
export class LogCapture {
  readonly lines: string[] = [];
  write(line: string): void {
    this.lines.push(line);
  }
  events(name?: string): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => name === undefined || e.event === name);
  }
  text(): string {
    return this.lines.join('');
  }
}

export type { BlobStore };
