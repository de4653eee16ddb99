import type { BlobStore } from '../../src/core/index.js';
import { payload } from './helpers.js';

/**
 * The migration test dataset: empty objects, unicode keys (including characters outside the BMP,
 * whose UTF-16 order differs from UTF-8 order), nested prefixes, and `large` objects above the
 * multipart threshold when asked for. Returns the keys written.
 */
export async function seedDataset(store: BlobStore, opts: { small?: number; large?: number; largeSize?: number; seed?: number } = {}): Promise<string[]> {
  const seed = opts.seed ?? 7;
  const specs: { key: string; size: number }[] = [
    { key: 'empty', size: 0 },
    { key: 'nested/deeper/empty', size: 0 },
    { key: 'unicode/ünïcödé.txt', size: 100 },
    { key: 'unicode/日本語/ファイル', size: 2000 },
    { key: 'unicode/emoji-😀.bin', size: 300 },
    { key: 'unicode/\uff5e-fullwidth-tilde', size: 10 },
    { key: 'unicode/\ue000-private-use', size: 11 },
    { key: 'a b/with space', size: 42 },
    { key: 'nested/a/b/c/d/e/f.dat', size: 70_000 },
  ];
  for (let i = 0; i < (opts.small ?? 40); i++) specs.push({ key: `many/${String(i).padStart(4, '0')}/obj-${i}.bin`, size: 1 + ((i * 7919) % 9000) });
  for (let i = 0; i < (opts.large ?? 0); i++) specs.push({ key: `large/big-${i}.bin`, size: opts.largeSize ?? 12 * 1024 * 1024 + 12345 });
  for (const [i, s] of specs.entries()) {
    await store.put(s.key, payload(s.size, seed + i), { contentType: i % 2 ? 'text/plain' : 'application/x-test', metadata: { idx: String(i) } });
  }
  return specs.map((s) => s.key);
}
