/** `cloud:region`, e.g. `aws:us-east-1`, `gcp:europe-west1`, `azure:eastus`. */
export const LOCATION_PATTERN = /^[a-z][a-z0-9]*:[a-z0-9][a-z0-9-]*$/;

/** The cloud a store URL's scheme belongs to. */
const SCHEME_CLOUD: Record<string, string> = { 's3:': 'aws', 'gs:': 'gcp', 'az:': 'azure' };

/**
 * Where a provider's bytes live, `cloud:region`: its `location` when given, else its URL scheme's
 * cloud and its `region` (`s3://b` + `us-east-1` → `aws:us-east-1`), else undefined (memory://,
 * file://, or a cloud URL without a region).
 */
export function providerLocation(p: { url: string; region?: string | undefined; location?: string | undefined }): string | undefined {
  if (p.location !== undefined) return p.location;
  const scheme = /^([a-z][a-z0-9+.-]*:)/i.exec(p.url)?.[1]?.toLowerCase() ?? '';
  const cloud = SCHEME_CLOUD[scheme];
  return cloud !== undefined && p.region ? `${cloud}:${p.region.toLowerCase()}` : undefined;
}
