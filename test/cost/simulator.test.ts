import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import type { Prices } from '../../src/config/schema.js';
import { CloudmuxError } from '../../src/core/errors.js';
import { generateTrace, TRACE_SHAPES } from '../../src/cost/generators.js';
import { SeededRandom } from '../../src/cost/random.js';
import { POLICY_NAMES, simulate, type SimulationReport } from '../../src/cost/simulator.js';
import type { TraceEvent } from '../../src/cost/trace.js';
import { SimWorld } from '../../src/cost/world.js';
import { BYTES_PER_GB, SECONDS_PER_MONTH } from '../../src/router/cost-model.js';

const M = SECONDS_PER_MONTH;
const GB = BYTES_PER_GB;
const prices = (storageGbMonth: number, egress: number, more: Partial<Prices> = {}): Prices =>
  ({ storageGbMonth, egressInternetGb: egress, egressToGb: {}, classAPer1k: 0, classBPer1k: 0, ...more });

const total = (r: SimulationReport, name: string): number => r.policies.find((p) => p.name === name)!.cost.total;

describe('cost simulator', () => {
  it('bills a hand-computed trace the same way for every policy', async () => {
    // a: $1/GB-month, b: $2/GB-month; egress $0.5/GB either way; requests free. 1 GiB written at a's
    // location, read at b's at 0, 0.1 and 1 month.
    const world = new SimWorld({ providers: [
      { name: 'a', location: 'aws:us-east-1', prices: prices(1, 0.5) },
      { name: 'b', location: 'gcp:europe-west1', prices: prices(2, 0.5) },
    ] });
    const trace: TraceEvent[] = [
      { time: 0, op: 'put', key: 'k', size: GB, location: 'aws:us-east-1' },
      { time: 0, op: 'get', key: 'k', size: GB, location: 'gcp:europe-west1' },
      { time: 0.1 * M, op: 'get', key: 'k', size: GB, location: 'gcp:europe-west1' },
      { time: 1 * M, op: 'get', key: 'k', size: GB, location: 'gcp:europe-west1' },
    ];
    const r = await simulate(world, trace, { fixedTtlSeconds: 0.2 * M, singleProvider: 'b' });
    // Base copy on a for the month: $1 in every policy that places by cost.
    // static: 3 reads from a × $0.5 = 1.5 → 2.5
    expect(total(r, 'static')).toBeCloseTo(2.5, 9);
    expect(total(r, 'write-local')).toBeCloseTo(2.5, 9);
    // single (on b): the upload leaves a's cloud ($0.5), a month on b ($2), local reads → 2.5
    expect(total(r, 'single')).toBeCloseTo(2.5, 9);
    // replicate-all: upload to a (local, free), copy a→b $0.5, a month on both $3, local reads → 3.5
    expect(total(r, 'replicate-all')).toBeCloseTo(3.5, 9);
    // optimum: keep from read 1 through read 2 (0.5 + 0.1 month × $2 = 0.7), re-fetch read 3 (0.5) → 1 + 1.2
    expect(total(r, 'optimum')).toBeCloseTo(2.2, 9);
    // fixed TTL 0.2 month: read 1 fetches (0.5) and keeps to 0.2; read 2 hits, extends to 0.3; read 3 finds
    // it expired (0.3 month × $2 = 0.6), fetches (0.5) and keeps a copy to 1.2 — billed to the trace's end at 1.0,
    // like the base copy, so nothing → 1 + 1.6
    expect(total(r, 'fixed-ttl')).toBeCloseTo(2.6, 9);
    const fixed = r.policies.find((p) => p.name === 'fixed-ttl')!;
    expect(fixed.counters).toMatchObject({ gets: 3, localReads: 1, remoteReads: 2, copiesCreated: 2, copiesExpired: 1 });
    expect(fixed.byProvider.b!.storage).toBeCloseTo(0.6, 9);
    expect(fixed.byProvider.a!.egress).toBeCloseTo(1.0, 9);
  });

  it('charges requests, retrieval and the minimum storage duration of an infrequent-access class', async () => {
    // ia: $1/GB-month, 30-day minimum, $0.01/GB retrieval, $10 per 1,000 writes, $1 per 1,000 reads.
    const world = new SimWorld({ providers: [
      { name: 'ia', location: 'aws:us-east-1', prices: prices(1, 0.1, { minStorageDays: 30, retrievalGb: 0.01, classAPer1k: 10, classBPer1k: 1 }) },
    ] });
    const trace: TraceEvent[] = [
      { time: 0, op: 'put', key: 'k', size: GB, location: 'aws:us-east-1' },
      { time: 86_400, op: 'get', key: 'k', size: GB, location: 'azure:eastus' },
      { time: 2 * 86_400, op: 'delete', key: 'k', size: 0, location: 'aws:us-east-1' },
    ];
    const r = await simulate(world, trace, { policies: ['static'] });
    const c = r.policies[0]!.cost;
    expect(c.storage).toBeCloseTo((30 * 86_400) / M, 9); // deleted after 2 days, billed 30
    expect(c.requests).toBeCloseTo(0.01 + 0.001, 9);
    expect(c.retrieval).toBeCloseTo(0.01, 9);
    expect(c.egress).toBeCloseTo(0.1, 9); // to a location with no provider: the internet rate
  });

  it('names the provider whose location is missing', () => {
    const cfg = parseConfigText('providers:\n  - { name: m, url: "memory://m" }\n');
    expect(() => SimWorld.fromConfig(cfg)).toThrow(/providers\[0\] \(m\): a simulation needs each provider's location/);
    try {
      SimWorld.fromConfig(cfg);
    } catch (e) {
      expect((e as CloudmuxError).code).toBe('InvalidConfig');
    }
  });

  it('derives locations from cloud URLs and regions', () => {
    const cfg = parseConfigText('providers:\n  - { name: s, url: "s3://b", region: us-east-1 }\n  - { name: g, url: "gs://b", location: "gcp:europe-west1" }\n');
    const world = SimWorld.fromConfig(cfg);
    expect(world.locationName(world.providerLoc[0]!)).toBe('aws:us-east-1');
    expect(world.locationName(world.providerLoc[1]!)).toBe('gcp:europe-west1');
  });

  it('no policy beats the offline optimum, and every bill adds up (seeded random traces)', async () => {
    const seed = Number(process.env.COST_SEED ?? 2201);
    const rng = new SeededRandom(seed);
    const locations = ['aws:us-east-1', 'aws:eu-west-1', 'gcp:us-central1', 'azure:eastus', 'aws:ap-south-1'];
    for (let c = 0; c < 12; c++) {
      const world = new SimWorld({
        providers: [
          { name: 'p0', location: locations[0]!, prices: prices(0.023, 0.09, { egressInterRegionGb: 0.02, classAPer1k: 0.005, classBPer1k: 0.0004 }) },
          { name: 'p1', location: locations[1]!, prices: prices(0.0125, 0.09, { egressInterRegionGb: 0.02, classAPer1k: 0.01, classBPer1k: 0.001, retrievalGb: 0.01, minStorageDays: 30 }) },
          { name: 'p2', location: locations[2]!, prices: prices(0.02, 0.12, { classAPer1k: 0.005, classBPer1k: 0.0004 }) },
          { name: 'p3', location: locations[3]!, prices: prices(0.0208, 0.087, { classAPer1k: 0.005, classBPer1k: 0.0004 }) },
        ],
        policies: [{ prefix: '', replicas: 1 + rng.int(2), writeQuorum: 1 }],
      });
      // Writes, overwrites, deletes, range reads and reads of keys never written, at random times.
      const trace: TraceEvent[] = [];
      let t = 0;
      for (let i = 0; i < 400; i++) {
        t += rng.exponential(rng.int(2) ? 600 : 86_400 * 3);
        const key = `k${rng.int(25)}`;
        const r = rng.next();
        const op = r < 0.7 ? 'get' : r < 0.93 ? 'put' : 'delete';
        trace.push({ time: t, op, key, size: op === 'delete' ? 0 : 1 + rng.int(2 ** 28), location: locations[rng.int(locations.length)]! });
      }
      const report = await simulate(world, trace);
      const optimum = total(report, 'optimum');
      for (const p of report.policies) {
        const at = `case ${c}, ${p.name} (COST_SEED=${seed})`;
        for (const v of Object.values(p.cost)) expect(Number.isFinite(v) && v >= 0, at).toBe(true);
        const sum = p.cost.storage + p.cost.egress + p.cost.requests + p.cost.retrieval;
        expect(p.cost.total, at).toBeCloseTo(sum, 9);
        expect(Object.values(p.byProvider).reduce((a, b) => a + b.total, 0), at).toBeCloseTo(p.cost.total, 9);
        expect(p.counters.localReads + p.counters.remoteReads, at).toBe(p.counters.gets);
        // Same base copies as the optimum: a copy-on-read policy can only do worse.
        if (['write-local', 'always-store', 'fixed-ttl', 't-even', 'adaptive'].includes(p.name)) {
          expect(p.cost.total, at).toBeGreaterThanOrEqual(optimum - 1e-12);
        }
      }
      expect(report.policies.map((p) => p.name)).toEqual([...POLICY_NAMES]);
    }
  });

  it('runs every generated shape through every policy', async () => {
    const world = new SimWorld({ providers: [
      { name: 'a', location: 'aws:us-east-1', prices: prices(0.023, 0.09) },
      { name: 'g', location: 'gcp:europe-west1', prices: prices(0.02, 0.12) },
    ] });
    for (const shape of TRACE_SHAPES) {
      const r = await simulate(world, generateTrace({ shape, seed: 3, requests: 2000, objects: 100, days: 2, locations: ['aws:us-east-1', 'gcp:europe-west1'] }));
      expect(r.requests).toBe(2000);
      expect(total(r, 'optimum')).toBeLessThanOrEqual(total(r, 'adaptive') + 1e-12);
    }
  });
});
