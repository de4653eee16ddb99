/**
 * The facts the sync engine reconciles, per path: the base (what the path looked like on both
 * sides at the last successful sync on this device), the local file now and the remote object now.
 * Paths are store keys (`/`-separated, portable key rules), relative to the local root.
 */

/** What identifies a local file without reading it: if all of these are unchanged, so are its bytes. */
export interface FileStamp {
  /** Inode number (decimal string: may exceed 2^53). */
  ino: string;
  size: number;
  /** Modification time in nanoseconds since the epoch (decimal string). */
  mtimeNs: string;
  /** Status-change time in nanoseconds (decimal string); moves on any write, chmod or rename. */
  ctimeNs: string;
}

/** The bytes of one side: size and SHA-256 (lowercase hex) of the plaintext. */
export interface Content {
  size: number;
  sha256: string;
}

/** The base of a path: the content both sides held when it was last in sync. */
export interface BaseEntry extends Content {
  /** Remote etag of that version (every remote write is conditional on it). */
  etag: string;
  /** Remote provider version, where the store has one. */
  version?: string;
  /** The local file as it was after that sync (absent when unknown, e.g. a record made remotely). */
  stamp?: FileStamp;
  /** Hybrid logical clock stamp of the write that made this version. */
  hlc: string;
  /** Device that wrote this version. */
  device: string;
}

/** A local file now. */
export interface LocalEntry extends Content {
  stamp: FileStamp;
  /**
   * HLC stamp of this content: the base's when unchanged, else the stamp taken when the change was
   * first seen (kept in the durable queue, so an offline edit keeps the time it was made).
   */
  hlc: string;
}

/** A remote object now. */
export interface RemoteEntry extends Content {
  etag: string;
  version?: string;
  /** The writer's HLC stamp from the object metadata ('' for objects no cloudmux device wrote). */
  hlc: string;
  /** The writer's device id from the object metadata ('' for foreign writes). */
  device: string;
}

export interface PathFacts {
  path: string;
  base?: BaseEntry;
  local?: LocalEntry;
  remote?: RemoteEntry;
}

/** A conflict policy: what happens when both sides changed a path to different bytes. */
export type ConflictPolicy =
  | { kind: 'keep-both' }
  | { kind: 'newest' }
  | { kind: 'local' }
  | { kind: 'remote' }
  | { kind: 'merge'; merger: string };

/**
 * The row of the case table a path fell in (docs/sync.md lists each with what the user sees).
 */
export type SyncCase =
  | 'unchanged'
  | 'absent'
  | 'local-created'
  | 'remote-created'
  | 'both-created-same'
  | 'both-created-differ'
  | 'local-changed'
  | 'remote-changed'
  | 'both-changed-same'
  | 'both-changed-differ'
  | 'local-deleted'
  | 'remote-deleted'
  | 'both-deleted'
  | 'local-deleted-remote-changed'
  | 'local-changed-remote-deleted'
  | 'renamed-locally'
  | 'renamed-remotely';

/**
 * What to do for one path. Remote writes are conditional: `ifMatch` an etag, or create-only when
 * it is absent. Local writes never replace a file that differs from the one examined.
 */
export type SyncAction =
  /** Nothing to move; the base is refreshed if an etag or stamp moved without a content change. */
  | { kind: 'none'; path: string; case: SyncCase }
  /** Both sides hold the same bytes: record them as the base. */
  | { kind: 'record'; path: string; case: SyncCase }
  /** Both sides are gone: forget the base. */
  | { kind: 'forget'; path: string; case: SyncCase }
  | { kind: 'upload'; path: string; case: SyncCase; ifMatch?: string }
  | { kind: 'download'; path: string; case: SyncCase }
  | { kind: 'delete-remote'; path: string; case: SyncCase; ifMatch: string }
  | { kind: 'delete-local'; path: string; case: SyncCase }
  /** Conflict, keep-both: the remote version stays at the path, the local one becomes a conflict copy on both sides. */
  | { kind: 'keep-both'; path: string; case: SyncCase; policy: ConflictPolicy['kind'] }
  /** Conflict won by the local side: the remote version goes to the versions area, then the local one replaces it. */
  | { kind: 'local-wins'; path: string; case: SyncCase; ifMatch: string; policy: ConflictPolicy['kind'] }
  /** Conflict won by the remote side: the local version goes to the versions area, then the remote one replaces it. */
  | { kind: 'remote-wins'; path: string; case: SyncCase; policy: ConflictPolicy['kind'] }
  /** Conflict for a merger: merged bytes replace both sides; a merger's conflict falls back to keep-both. */
  | { kind: 'merge'; path: string; case: SyncCase; merger: string }
  /** A local rename seen as delete + create of the same bytes: server-side copy, then a conditional delete. */
  | { kind: 'rename-remote'; path: string; from: string; case: 'renamed-locally'; ifMatch: string }
  /** A remote rename: the local file is moved (no download). */
  | { kind: 'rename-local'; path: string; from: string; case: 'renamed-remotely' };

export type SyncActionKind = SyncAction['kind'];
