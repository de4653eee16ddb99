/**
 * The bytes `[skip, skip + length)` of a stream that arrives in pieces: range reads over chunked
 * objects and over encrypted segments drop the start of the first piece and cut the last one.
 * Feed the pieces in order to {@link ByteWindow.take}; it returns the part of each inside the
 * window (a view, not a copy; empty before and after it).
 */
export class ByteWindow {
  private skipLeft: number;
  private takeLeft: number;
  private over = false;

  constructor(skip: number, length: number) {
    if (!Number.isSafeInteger(skip) || skip < 0) throw new RangeError(`byte window skip must be a non-negative integer, got ${skip}`);
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`byte window length must be a non-negative integer, got ${length}`);
    this.skipLeft = skip;
    this.takeLeft = length;
  }

  /** The part of `piece` inside the window; advances past all of `piece`. */
  take(piece: Buffer): Buffer {
    let p = piece;
    if (this.skipLeft > 0) {
      if (p.byteLength <= this.skipLeft) {
        this.skipLeft -= p.byteLength;
        return p.subarray(0, 0);
      }
      p = p.subarray(this.skipLeft);
      this.skipLeft = 0;
    }
    if (p.byteLength > this.takeLeft) {
      this.over = true;
      p = p.subarray(0, this.takeLeft);
    }
    this.takeLeft -= p.byteLength;
    return p;
  }

  /** Bytes of the window not yet returned (0 once it is full). */
  get remaining(): number {
    return this.takeLeft;
  }

  /** True once the window is full. */
  get done(): boolean {
    return this.takeLeft === 0;
  }

  /** True once a piece held bytes past the end of the window. */
  get overflowed(): boolean {
    return this.over;
  }
}
