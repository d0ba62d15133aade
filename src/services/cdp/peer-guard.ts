/**
 * The mirror engine's write path meets the fencing rules here: when a write
 * finds a target neither live nor paused, `away(host)` decides whether it
 * goes on (its dirty map keeps it) or fails with EIO, nothing applied.
 *
 * The heartbeat of a target is its mirror link, the engine's connection to
 * the peer's daemon (retried every interval): a peer whose link has been
 * down for `peerTimeoutMs` is lost, and PeerLoss applies 003's cases with
 * the peer's fencing policy. A link that comes back within the timeout was a
 * blip: the write goes on, the resync sends it.
 */
import { VolumeError } from '../nbd/volume.js';
import type { Clock } from '../clock.js';
import { Heartbeat } from './heartbeat.js';
import { PeerLoss, type PeerLossDeps } from './peer-loss.js';

export interface PeerGuardDeps extends PeerLossDeps {
  /** the engine's link to the target is up */
  linkUp(host: string): boolean;
  /** why it is down, when known */
  linkError(host: string): string | null;
  /** paused by the operator: its link is down on purpose, so it counts as answering */
  paused?(host: string): boolean;
  peerTimeoutMs: number;
  clock?: Clock;
}

export class PeerGuard {
  private readonly beats = new Map<string, Heartbeat>();
  private readonly loss: PeerLoss;

  constructor(
    private readonly mirror: string,
    private readonly deps: PeerGuardDeps,
  ) {
    this.loss = new PeerLoss(deps);
  }

  private heartbeat(host: string): Heartbeat {
    let hb = this.beats.get(host);
    if (!hb) {
      hb = new Heartbeat(
        async () => {
          if (!this.deps.linkUp(host) && !this.deps.paused?.(host)) throw new Error(this.deps.linkError(host) ?? 'the mirror link is down');
        },
        { peerTimeoutMs: this.deps.peerTimeoutMs, clock: this.deps.clock },
      );
      hb.on('lost', (e) => this.deps.log(this.mirror, `Peer ${host} lost: ${e.why ?? 'no answer'} (peer timeout ${this.deps.peerTimeoutMs / 1000} sec)`));
      hb.on('back', () => {
        this.loss.onPeerBack(this.mirror);
        this.deps.log(this.mirror, `Peer ${host} is back`);
      });
      this.beats.set(host, hb.start());
    }
    return hb;
  }

  get peerTimeoutMs(): number {
    return this.deps.peerTimeoutMs;
  }

  /** start watching the targets now, so a loss is known before the next write */
  watch(hosts: string[]): void {
    for (const h of hosts) this.heartbeat(h);
  }

  /** `host` left a write unanswered for the peer timeout: it is lost now (the next away() decides the loss) */
  unanswered(host: string, why: string): void {
    this.heartbeat(host).markLost(why);
  }

  /** a write found `host` away: resolves to let it through, throws EIO to fail it */
  async away(host: string): Promise<void> {
    const hb = this.heartbeat(host);
    if (!hb.lost) {
      await new Promise<void>((resolve) => {
        const done = () => {
          hb.off('lost', done);
          hb.off('beat', done);
          resolve();
        };
        hb.on('lost', done);
        hb.on('beat', done);
      });
    }
    if (!hb.lost) return; // back within the peer timeout: the dirty map has the write
    const v = await this.loss.onPeerLost(this.mirror, host);
    if (v.write === 'fail') throw new VolumeError('EIO', `auto-cdp:${this.mirror}: ${v.outcome.reason}`);
  }

  async close(): Promise<void> {
    await Promise.all([...this.beats.values()].map((hb) => hb.close()));
    this.beats.clear();
  }
}
