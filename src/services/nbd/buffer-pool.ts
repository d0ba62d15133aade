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
  release(): void;
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
    let released = false;
    return {
      buf: base.subarray(0, length),
      release: () => {
        if (released) return;
        released = true;
        if (this.idle + size > this.keepBytes) return; // let the GC have it
        const list = this.free.get(size) ?? [];
        list.push(base);
        this.free.set(size, list);
        this.idle += size;
      },
    };
  }
}

/** one pool for the process: connections come and go, the buffers stay warm */
export const sharedPool = new BufferPool();
