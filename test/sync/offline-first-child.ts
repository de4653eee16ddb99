/**
 * Child of offline-first.test.ts: opens an offline-first store over DIR whose remote (an fs store
 * at REMOTE) is unreachable, writes KEY, prints `acked` once the put returned, and waits to be
 * killed (kill -9) before anything could be pushed.
 */
import { FsStore } from '../../providers/fs/index.js';
import { offlineFirst } from '../../src/sync/offline-first.js';
import { FaultyStore } from '../faults/faulty-store.js';

const [dir, remoteRoot, key, content] = process.argv.slice(2) as [string, string, string, string];
const remote = new FaultyStore(new FsStore({ root: remoteRoot })).outage(true, 'ProviderUnavailable');
const store = offlineFirst(dir, remote, { device: 'child', pair: 'p', minBackoffMs: 60_000 });
await store.put(key, content);
process.stdout.write(`acked ${store.status().pending}\n`);
setInterval(() => undefined, 1000);
