/**
 * Reused buffers for READ replies and WRITE payloads. A fresh 256 KiB
 * buffer per request costs more than the copy into it (the kernel faults
 * its pages in, the GC frees them again): measured, reusing them more than
 * doubled sequential read throughput. Buffers come in power-of-two classes
 * from 4 KiB to the max payload; at most `keepBytes` are kept idle.
 */
export interface Lease {
  /** exactly the length asked for */
  buf: Buffer;
  /** the taker is done with it (once; later calls do nothing) */
  release(): void;
  /**
   * one more holder (a mirror frame not yet sent): the buffer goes back to
   * the pool only once the taker released it and every holder called the
   * function returned (once each)
   */
  hold(): () => void;
}

/** a lease of a buffer nobody reuses (a view of a received chunk, a fresh copy): nothing to give back */
export function unpooled(buf: Buffer): Lease {
  const nothing = () => undefined;
  return { buf, release: nothing, hold: () => nothing };
}

const MIN_CLASS = 4096;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private idle = 0;

  constructor(private readonly keepBytes = 64 * 1024 * 1024) {}

  acquire(length: number): Lease {
    let size = MIN_CLASS;
    while (size < length) size *= 2;
    const reused = this.free.get(size)?.pop();
    if (reused) this.idle -= size;
    const base = reused ?? Buffer.allocUnsafeSlow(size);
    let holders = 1;
    const drop = () => {
      if (--holders > 0) return;
      if (this.idle + size > this.keepBytes) return; // let the GC have it
      const list = this.free.get(size) ?? [];
      list.push(base);
      this.free.set(size, list);
      this.idle += size;
    };
    const once = () => {
      let done = false;
      return () => {
        if (done) return;
        done = true;
        drop();
      };
    };
    return {
      buf: base.subarray(0, length),
      release: once(),
      hold: () => {
        if (holders <= 0) throw new Error('A pooled buffer was held after it went back to the pool.');
        holders++;
        return once();
      },
    };
  }
}

/** one pool for the process: connections come and go, the buffers stay warm */
export const sharedPool = new BufferPool();
