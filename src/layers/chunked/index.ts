/** Content-defined chunking, chunk manifests and deduplicated storage (docs/chunk-format.md). */
export {
  Chunker, DEFAULT_CHUNK_SIZES, GEAR, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, checkChunkSizes, chunkStream, cutPoints, keyedGear, type ChunkParts,
  type ChunkSizes,
} from './chunker.js';
export { chunkIdKeyFromKeyring, keyedChunkIds, plainChunkIds, type ChunkIdScheme } from './chunk-ids.js';
export { ChunkIndex } from './chunk-index.js';
export { type TransferStats } from './chunk-writer.js';
export {
  DEFAULT_CHUNK_PREFIX, MANIFEST_VERSION, chunkIdOf, chunkKey, parseManifest, serializeManifest, type ChunkIdAlgorithm, type ChunkRef, type Manifest,
} from './manifest.js';
export { ChunkedStore, DEFAULT_GRACE_MS, type ChunkedStoreOptions } from './store.js';
export { collectGarbage, type CollectableStore, type GcOptions, type GcReport } from './gc.js';
