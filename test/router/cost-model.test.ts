import { describe, expect, it } from 'vitest';
import type { Prices } from '../../src/config/schema.js';
import { BYTES_PER_GB, CostModel, SECONDS_PER_MONTH } from '../../src/router/cost-model.js';
import { providerLocation } from '../../src/router/locations.js';

const p = (more: Partial<Prices> = {}): Prices => ({ storageGbMonth: 0.023, egressInternetGb: 0.09, egressToGb: {}, classAPer1k: 0.005, classBPer1k: 0.0004, ...more });

describe('CostModel with locations', () => {
  const model = new CostModel(
    { use1: p({ egressInterRegionGb: 0.02 }), use1b: p(), euw1: p({ egressInterRegionGb: 0.02, egressToGb: { gcp: 0.05 } }), gcp: p({ egressInternetGb: 0.12 }) },
    { locations: { use1: 'aws:us-east-1', use1b: 'aws:us-east-1', euw1: 'aws:eu-west-1', gcp: 'gcp:us-central1' } },
  );

  it('prices egress by where the bytes go: same location free, same cloud inter-region, else internet', () => {
    expect(model.egressPerGb('use1', 'aws:us-east-1')).toBe(0);
    expect(model.egressPerGb('use1', 'use1b')).toBe(0); // two providers in one region
    expect(model.egressPerGb('use1', 'aws:eu-west-1')).toBe(0.02);
    expect(model.egressPerGb('use1', 'euw1')).toBe(0.02);
    expect(model.egressPerGb('use1b', 'aws:eu-west-1')).toBe(0.09); // no inter-region figure: the internet rate
    expect(model.egressPerGb('use1', 'gcp:us-central1')).toBe(0.09);
    expect(model.egressPerGb('gcp', 'aws:us-east-1')).toBe(0.12);
    expect(model.egressPerGb('euw1', 'gcp')).toBe(0.05); // a named figure wins
    expect(model.egressPerGb('euw1', undefined)).toBe(0.09);
  });

  it('reads, uploads and storage', () => {
    expect(model.readCostTo('gcp', BYTES_PER_GB, 'aws:us-east-1')).toBeCloseTo(0.12 + 0.0004 / 1000, 12);
    expect(model.putCostFrom('use1', BYTES_PER_GB, 'aws:us-east-1')).toBeCloseTo(0.023 + 0.005 / 1000, 12);
    expect(model.putCostFrom('euw1', BYTES_PER_GB, 'aws:us-east-1')).toBeCloseTo(0.023 + 0.005 / 1000 + 0.02, 12);
    expect(model.putCostFrom('use1', BYTES_PER_GB, 'azure:eastus')).toBeCloseTo(0.023 + 0.005 / 1000, 12); // no provider there: free upload
    expect(model.storageCost('use1', BYTES_PER_GB, SECONDS_PER_MONTH / 2)).toBeCloseTo(0.0115, 12);
  });

  it('applies a minimum storage duration only to copies that ended', () => {
    const ia = new CostModel({ ia: p({ storageGbMonth: 0.0125, minStorageDays: 30 }) });
    expect(ia.storageCost('ia', BYTES_PER_GB, 86_400, false)).toBeCloseTo((0.0125 * 86_400) / SECONDS_PER_MONTH, 12);
    expect(ia.storageCost('ia', BYTES_PER_GB, 86_400, true)).toBeCloseTo((0.0125 * 30 * 86_400) / SECONDS_PER_MONTH, 12);
  });

  it('keeps the legacy behaviour without locations: a provider-name location, named or internet egress', () => {
    const legacy = new CostModel({ aws: p(), gcp: p({ egressToGb: { aws: 0.01 } }) }, { location: 'aws' });
    expect(legacy.readCost('aws', BYTES_PER_GB)).toBeCloseTo(0.0004 / 1000, 12);
    expect(legacy.readCost('gcp', BYTES_PER_GB)).toBeCloseTo(0.01 + 0.0004 / 1000, 12);
    expect(legacy.egressPerGb('aws', 'gcp')).toBe(0.09);
  });

  it('derives a provider location from its URL and region', () => {
    expect(providerLocation({ url: 's3://b/p', region: 'us-east-1' })).toBe('aws:us-east-1');
    expect(providerLocation({ url: 'gs://b', region: 'EUROPE-WEST1' })).toBe('gcp:europe-west1');
    expect(providerLocation({ url: 'az://acct/c', region: 'eastus' })).toBe('azure:eastus');
    expect(providerLocation({ url: 'memory://x', region: 'us-east-1' })).toBeUndefined();
    expect(providerLocation({ url: 's3://b' })).toBeUndefined();
    expect(providerLocation({ url: 'memory://x', location: 'aws:us-east-1' })).toBe('aws:us-east-1');
  });
});
