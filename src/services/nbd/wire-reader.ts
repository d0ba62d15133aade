/**
 * Reads exact byte counts from a socket: `await take(n)` resolves with n
 * bytes, or rejects once the socket has ended. A request that fits in one
 * received chunk comes back as a view of it (no copy); only a payload split
 * over chunks is copied, once, into a buffer of its size. The socket is
 * paused while more than `highWater` bytes wait unread, so a client cannot
 * make the server buffer without bound.
 */
import type { Socket } from 'node:net';
import { unpooled, type BufferPool, type Lease } from './buffer-pool.js';

export class ConnectionClosed extends Error {
  constructor() {
    super('The client closed the connection.');
    this.name = 'ConnectionClosed';
  }
}

export class WireReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private want = 0;
  private waiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private ended = false;
  private paused = false;

  constructor(
    private readonly socket: Socket,
    private readonly highWater = 64 * 1024 * 1024,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered > this.highWater && !this.paused) {
        this.paused = true;
        socket.pause();
      }
      if (this.waiter && this.buffered >= this.want) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve();
      }
    });
    const end = () => {
      this.ended = true;
      const w = this.waiter;
      this.waiter = null;
      w?.reject(new ConnectionClosed());
    };
    socket.on('end', end);
    socket.on('close', end);
  }

  /** bytes received but not yet taken */
  get pending(): number {
    return this.buffered;
  }

  async take(n: number): Promise<Buffer> {
    await this.waitFor(n);
    return this.takeNow(n);
  }

  /** n bytes in a pooled buffer when they must be copied anyway; a view of the received chunk (nothing to give back) when not */
  async takeLease(n: number, pool: BufferPool): Promise<Lease> {
    await this.waitFor(n);
    if (this.chunks[0].length >= n) return unpooled(this.takeNow(n));
    const lease = pool.acquire(n);
    this.takeNow(n, lease.buf);
    return lease;
  }

  private async waitFor(n: number): Promise<void> {
    if (this.buffered >= n) return;
    if (this.ended) throw new ConnectionClosed();
    this.want = n;
    if (this.paused) this.resume();
    await new Promise<void>((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** drop n bytes without keeping them (an oversize payload we refuse) */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const step = Math.min(n, 1024 * 1024);
      await this.take(step);
      n -= step;
    }
  }

  private takeNow(n: number, into?: Buffer): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (n === 0) return Buffer.alloc(0);
    if (!into && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = into ?? Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0];
        const part = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, part);
        filled += part;
        if (part === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(part);
      }
    }
    this.buffered -= n;
    if (this.paused && this.buffered <= this.highWater / 2) this.resume();
    return out;
  }

  private resume(): void {
    this.paused = false;
    this.socket.resume();
  }
}
