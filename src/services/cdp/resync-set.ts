/**
 * The chunks a target must be sent whole before it is level again: a copy of
 * its dirty map's bits taken when its link came up, one bit per chunk (a
 * 1 TiB zvol's set is 2 MiB, never a list of 16 million numbers).
 */
export class ResyncSet {
  private readonly bits: Buffer;
  size = 0;
  /** how many there were when the set was made: progress is against this */
  readonly total: number;

  /** `bits`: a copy of the dirty map's bits (LiveDirtyMap.copyBits) */
  constructor(
    readonly chunks: number,
    bits: Buffer,
  ) {
    this.bits = bits;
    const tail = chunks % 8;
    if (tail && bits.length) bits[bits.length - 1] &= (1 << tail) - 1; // bits past the last chunk are not chunks
    for (let i = 0; i < bits.length; i++) {
      let b = bits[i];
      while (b) {
        b &= b - 1;
        this.size++;
      }
    }
    this.total = this.size;
  }

  has(c: number): boolean {
    return (this.bits[c >> 3] & (1 << (c & 7))) !== 0;
  }

  add(c: number): void {
    if (this.has(c)) return;
    this.bits[c >> 3] |= 1 << (c & 7);
    this.size++;
  }

  delete(c: number): boolean {
    if (!this.has(c)) return false;
    this.bits[c >> 3] &= ~(1 << (c & 7));
    this.size--;
    return true;
  }

  /** the first chunk in the set at or after `from`, wrapping around; -1 when empty */
  next(from: number): number {
    if (this.size === 0) return -1;
    for (let pass = 0; pass < 2; pass++) {
      const start = pass === 0 ? from : 0;
      const end = pass === 0 ? this.chunks : from;
      for (let c = start; c < end; ) {
        if ((c & 7) === 0 && this.bits[c >> 3] === 0) {
          c += 8;
          continue;
        }
        if (this.has(c)) return c;
        c++;
      }
    }
    return -1;
  }

  percentDone(): number {
    return this.total === 0 ? 100 : Math.floor((100 * (this.total - this.size)) / this.total);
  }
}
