/**
 * Block buffers reused across one upload. Fresh 4–8 MiB buffers per block are garbage V8 collects
 * late (external memory), which shows up as RSS; reusing a few keeps a streamed put's footprint
 * near blocks-in-flight × block size.
 */
export class BlockPool {
  private readonly free: Buffer[] = [];
  take(size: number): Buffer {
    const i = this.free.findIndex((b) => b.byteLength === size);
    return i >= 0 ? this.free.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(size);
  }
  /** Returns a buffer once no request reads it any more. */
  give(buf: Buffer): void {
    this.free.push(Buffer.from(buf.buffer, buf.byteOffset, buf.buffer.byteLength - buf.byteOffset));
  }
}

/**
 * Re-chunks a stream into blocks copied into pooled buffers, whose size `sizeAt(index)` may grow
 * (Azure allows blocks of different sizes in one blob). Each yielded block is a view of a pooled
 * buffer the caller hands back with `pool.give` when its upload is over.
 */
export async function* pooledBlocks(source: AsyncIterable<Buffer>, sizeAt: (index: number) => number, pool: BlockPool): AsyncGenerator<Buffer> {
  let index = 0;
  let size = sizeAt(0);
  let block: Buffer | undefined;
  let have = 0;
  for await (const chunk of source) {
    let c = chunk;
    while (c.byteLength > 0) {
      block ??= pool.take(size);
      const n = Math.min(size - have, c.byteLength);
      c.copy(block, have, 0, n);
      have += n;
      c = c.subarray(n);
      if (have === size) {
        const full = block;
        block = undefined;
        have = 0;
        size = sizeAt(++index);
        yield full;
      }
    }
  }
  if (block && have > 0) yield block.subarray(0, have);
}
