/**
 * What the NBD server exports for the slave zvol of a mirror (QUADStor's
 * active-active): reads are this copy's; a write is forwarded to the master
 * over the master's own mirror stream (receiver.ts's ForwardSession), which
 * orders it with its own writes, applies it, mirrors it back and only then
 * answers, so the client here is acked when both copies hold it, and both
 * copies see every write in the master's order.
 *
 * Every forwarded write has a deadline, the mirror's peer timeout: a master
 * whose stream hangs without closing (its daemon stopped, a link that drops
 * packets) is lost when it passes; its stream is ended here first, so no
 * frame of it is applied after, and no write is acked that this copy does
 * not hold.
 *
 * No master stream (the master is away, the stream ended under a forwarded
 * write, or left it unanswered): the peer-loss rules decide (003 "Fencing Failures",
 * slave side, peer-guard.ts): EIO, or this copy takes over as master and
 * the write is applied through its own engine from then on.
 */
import { VolumeError, type BlockVolume, type Extent, type WriteFlags, type ZeroFlags } from '../nbd/volume.js';
import { ForwardRefused, type ForwardSession } from './receiver.js';

export interface SlaveVolumeDeps {
  mirror: string;
  /** the master's stream now, or null */
  session(): ForwardSession | null;
  /** how long a forwarded write may wait for the master's answer (the peer timeout) */
  deadlineMs(): number;
  /** the master left a forwarded write unanswered past the deadline: its stream is ended and it counts as lost */
  unanswered(s: ForwardSession, why: string): Promise<void>;
  /** this copy is master now (taken over, or switched by hand) */
  isMaster(): boolean;
  /** the master is away: resolves when this copy may write (it took over), throws EIO otherwise */
  away(): Promise<void>;
  /** this copy's engine once it is master (null: it is not) */
  master(): Promise<BlockVolume | null>;
}

/** a forwarded write the master did not answer within the deadline */
class Unanswered extends Error {}

export class SlaveVolume implements BlockVolume {
  readonly size: number;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly readOnly = false;
  readonly canMultiConn = false;

  constructor(
    private readonly local: BlockVolume,
    private readonly deps: SlaveVolumeDeps,
  ) {
    this.size = local.size;
    this.minBlockSize = local.minBlockSize;
    this.preferredBlockSize = local.preferredBlockSize;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.local.read(offset, length);
  }

  write(offset: number, data: Buffer, flags: WriteFlags): Promise<void> {
    return this.route(
      (s) => s.write(offset, data),
      (m) => m.write(offset, data, flags),
    );
  }

  writeZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    return this.route(
      (s) => s.zero(offset, length),
      (m) => m.writeZeroes(offset, length, flags),
    );
  }

  /** forwarded to the master while slave; through this copy's engine once master */
  private async route(forward: (s: ForwardSession) => Promise<void>, own: (m: BlockVolume) => Promise<void>): Promise<void> {
    if (!this.deps.isMaster()) {
      const s = this.deps.session();
      if (s) {
        try {
          return await this.inTime(forward(s), s);
        } catch (error) {
          if (error instanceof ForwardRefused) throw new VolumeError('EIO', `auto-cdp:${this.deps.mirror}: the master ${s.from} refused the write: ${error.message}`);
          if (error instanceof Unanswered) await this.deps.unanswered(s, error.message);
          // the stream ended under it: as if the master were away (a takeover applies it here; the same data twice is harmless)
        }
      }
      await this.deps.away();
    }
    const m = await this.deps.master();
    if (!m) throw new VolumeError('EIO', `auto-cdp:${this.deps.mirror}: this copy is slave and its master does not answer: the write is refused.`);
    return own(m);
  }

  /** the forwarded write, or Unanswered once the deadline passed without the master's answer */
  private inTime(write: Promise<void>, s: ForwardSession): Promise<void> {
    const ms = this.deps.deadlineMs();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Unanswered(`the master ${s.from} left a forwarded write unanswered for ${ms / 1000} sec (peer timeout)`)), ms);
    });
    return Promise.race([write, late]).finally(() => clearTimeout(timer));
  }

  /** advisory: the zvol keeps the data (zvol-writer.ts), and this copy's handle is read-only */
  async trim(): Promise<void> {}

  /** forwarded writes are durable on both copies when acked; a flush makes this copy's own reads so too */
  flush(): Promise<void> {
    return this.local.flush();
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    if (!this.local.extents) throw new VolumeError('ENOTSUP', 'No block status for this volume.');
    return this.local.extents(offset, length);
  }

  async close(): Promise<void> {
    await this.local.close();
  }
}
