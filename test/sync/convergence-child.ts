/**
 * Child process of the convergence test: one sync round of one device, killed with SIGKILL by
 * itself at the n-th remote call (before the call reaches the store, or after the store did it
 * but before the answer is used), to prove that a kill -9 mid-round loses nothing.
 * Usage: convergence-child.ts <localDir> <remote> <device> <killAtCall> <before|after>, where
 * <remote> is an fs root, `azure:` + JSON `{ connectionString, container }` (Azurite), or
 * `router:` + JSON `{ s3: { endpoint, bucket }, azure: { connectionString, container }, state }`:
 * a router of its own over both emulators on the parent's SQLite catalog file, as a second
 * process of a deployment would run it.
 */
import { FsStore } from '../../providers/fs/store.js';
import { AzureStore } from '../../providers/azure/store.js';
import { resolveAzureConfig } from '../../providers/azure/config.js';
import type { Body, CopyOptions, DeleteOptions, GetOptions, GetResult, ObjectMeta, PutOptions } from '../../src/core/index.js';
import { ForwardingStore } from '../../src/layers/forwarding-store.js';
import { S3Store } from '../../providers/s3/store.js';
import { Router } from '../../src/router/router.js';
import { SqliteStateStore } from '../../src/state/sqlite.js';
import type { BlobStore } from '../../src/core/index.js';
import { FLAT } from '../router/fixture.js';
import { SyncEngine } from '../../src/sync/sync-engine.js';

const [local, remoteRoot, device, killAt, when] = process.argv.slice(2);

class KillSwitch extends ForwardingStore {
  protected readonly layerName = 'KillSwitch';
  private calls = 0;
  private async around<T>(call: () => Promise<T>): Promise<T> {
    const n = ++this.calls;
    if (n === Number(killAt) && when === 'before') process.kill(process.pid, 'SIGKILL');
    const r = await call();
    if (n === Number(killAt)) process.kill(process.pid, 'SIGKILL');
    return r;
  }
  override put(key: string, body: Body, opts?: PutOptions): Promise<ObjectMeta> {
    return this.around(() => super.put(key, body, opts));
  }
  override get(key: string, opts?: GetOptions): Promise<GetResult> {
    return this.around(() => super.get(key, opts));
  }
  override copy(src: string, dst: string, opts?: CopyOptions): Promise<ObjectMeta> {
    return this.around(() => super.copy(src, dst, opts));
  }
  override delete(key: string, opts?: DeleteOptions): Promise<void> {
    return this.around(() => super.delete(key, opts));
  }
}

interface RouterSpec { s3: { endpoint: string; bucket: string }; azure: { connectionString: string; container: string }; state: string }

const spec = remoteRoot!;
function open(): BlobStore {
  if (spec.startsWith('azure:')) return new AzureStore(resolveAzureConfig(undefined, JSON.parse(spec.slice('azure:'.length)) as { connectionString: string; container: string }));
  if (spec.startsWith('router:')) {
    const r = JSON.parse(spec.slice('router:'.length)) as RouterSpec;
    return new Router({
      providers: [
        { name: 's3', store: new S3Store({ bucket: r.s3.bucket, endpoint: r.s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } }), prices: FLAT },
        { name: 'azure', store: new AzureStore(resolveAzureConfig(undefined, r.azure)), prices: FLAT },
      ],
      state: new SqliteStateStore({ path: r.state, durability: 'normal' }),
      policies: [{ replicas: 2, writeQuorum: 2 }],
      health: { probeIntervalMs: 0 },
    });
  }
  return new FsStore({ root: spec, fsync: false });
}
const inner = open();
const remote = new KillSwitch(inner);
const engine = SyncEngine.open({ local: local!, remote, device, pair: 'convergence', fsync: false });
const r = await engine.round();
engine.close();
await inner.close();
process.stdout.write(`DONE ${JSON.stringify(r.counts)}\n`);
