/**
 * What the NBD server exports for the master zvol of a mirror: every write
 * and zeroing goes through the mirror engine (local + dirty maps + targets,
 * engine.ts); reads and block status are the local zvol's, flush is the
 * local zvol's and, in sync mode, every live target's. One engine
 * per mirror is shared by every connection; closing a connection leaves it
 * running.
 */
import { VolumeError, type BlockVolume, type Extent, type WriteFlags, type ZeroFlags } from '../nbd/volume.js';
import { FrameType } from './frames.js';
import type { MirrorEngine } from './engine.js';

export class MirrorVolume implements BlockVolume {
  readonly size: number;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly readOnly = false;
  readonly canMultiConn: boolean;
  private closed = false;

  constructor(private readonly engine: MirrorEngine) {
    const v = engine.volume;
    this.size = v.size;
    this.minBlockSize = v.minBlockSize;
    this.preferredBlockSize = v.preferredBlockSize;
    this.canMultiConn = Boolean(v.canMultiConn);
  }

  private get inner(): BlockVolume {
    if (this.closed) throw new VolumeError('ESHUTDOWN', 'The volume is closed.');
    return this.engine.volume;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.inner.read(offset, length);
  }

  write(offset: number, data: Buffer, flags: WriteFlags): Promise<void> {
    const v = this.inner;
    return this.engine.apply(
      offset,
      data.length,
      () => v.write(offset, data, flags),
      (seq) => ({ type: FrameType.WRITE, seq, offset, data }),
      data.length,
      flags.fua,
      undefined,
      flags.keep, // the NBD server's pooled buffer, held by each link until its frame is done with it
    );
  }

  writeZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    const v = this.inner;
    return this.engine.apply(
      offset,
      length,
      () => v.writeZeroes(offset, length, flags),
      (seq) => ({ type: FrameType.ZERO, seq, offset, length }),
      64,
      flags.fua,
    );
  }

  /** advisory: the zvol keeps the data (zvol-writer.ts), so both copies stay equal without sending anything */
  trim(offset: number, length: number, flags: WriteFlags): Promise<void> {
    return this.inner.trim(offset, length, flags);
  }

  /** sync: durable on every live target as well (their writes were acknowledged once written there) */
  async flush(): Promise<void> {
    await this.inner.flush();
    await this.engine.flushTargets();
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    const v = this.inner;
    if (!v.extents) throw new VolumeError('ENOTSUP', 'No block status for this volume.');
    return v.extents(offset, length);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
