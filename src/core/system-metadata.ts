/**
 * The one channel through which cloudmux's own code passes reserved `cloudmux_*` metadata names to
 * the store below it (the encryption header, a migrated object's header, a router's replicas).
 *
 * Deliberately not exported from the package: a caller's metadata can never carry reserved names
 * (validateMetadata refuses them), only records made here can. The mark is a non-enumerable
 * symbol-keyed property of the record itself, so it survives being handed down a stack of layers
 * as is, and is lost by any copy (`{ ...metadata }`), which then is checked as user input again.
 */
import { carriedReservedMetadata, userMetadata, validateMetadata } from './metadata.js';

const SYSTEM = Symbol('cloudmux.systemMetadata');

/**
 * A copy of `metadata` marked as written by cloudmux itself: its reserved names (other than
 * `cloudmux_sha256`, which only the store that hashed the bytes writes) pass validateMetadata.
 */
export function systemMetadata(metadata: Record<string, string>): Record<string, string> {
  const out = { ...metadata };
  Object.defineProperty(out, SYSTEM, { value: true, enumerable: false });
  return out;
}

/** True when `metadata` was made by {@link systemMetadata}. */
export function isSystemMetadata(metadata: Record<string, string> | undefined): boolean {
  return metadata !== undefined && (metadata as { [SYSTEM]?: boolean })[SYSTEM] === true;
}

/**
 * Stored metadata as a store receiving the same bytes should get it: the user names (mapped by
 * `mapUser`, e.g. onto portable names) and cloudmux's names that travel with the bytes (the
 * encryption header), marked as cloudmux's own; never `cloudmux_sha256`, which the receiving
 * store writes from the bytes it hashed.
 */
export function carriedMetadata(
  metadata: Record<string, string>, mapUser: (user: Record<string, string>) => Record<string, string> = (m) => m,
): Record<string, string> {
  return systemMetadata({ ...mapUser(userMetadata(metadata)), ...carriedReservedMetadata(metadata) });
}

/**
 * `replacement` (a caller's user metadata, checked here so its reserved names are refused before
 * anything could mark them) with cloudmux's names that travel with the bytes of `stored`.
 */
export function replacedMetadata(stored: Record<string, string>, replacement: Record<string, string>, provider?: string, key?: string): Record<string, string> {
  validateMetadata(replacement, provider, key);
  return systemMetadata({ ...carriedReservedMetadata(stored), ...replacement });
}
