/** What cloudmux reads off a GCS object resource: its etag (`<generation>.<metageneration>`) and user metadata. */
import type { GcsObjectResource } from './checksums.js';

/** The parts of cloudmux's GCS etag: `<generation>.<metageneration>`. */
export interface EtagParts {
  generation: string;
  metageneration: string | undefined;
}

export function etagOf(r: GcsObjectResource): string {
  return `${r.generation}.${r.metageneration ?? 1}`;
}

export function parseEtag(etag: string): EtagParts | undefined {
  const m = /^"?(\d+)(?:\.(\d+))?"?$/.exec(etag.trim());
  return m ? { generation: m[1]!, metageneration: m[2] } : undefined;
}

export function stringMap(m: GcsObjectResource['metadata']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m ?? {})) if (v !== null && v !== undefined) out[k] = String(v);
  return out;
}
