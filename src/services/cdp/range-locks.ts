/**
 * Chunk-range locks: a write and a resync read of the same chunk never run
 * at once, so the order in which they reach the mirror stream is the order
 * in which they took effect on the local zvol.
 */
export class RangeLocks {
  private readonly held = new Map<number, Promise<void>>();

  async lock(first: number, last: number): Promise<() => void> {
    const before: Promise<void>[] = [];
    for (let c = first; c <= last; c++) {
      const p = this.held.get(c);
      if (p) before.push(p);
    }
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    // taken at once (no await before the set), so a later caller queues behind this one
    const gate = before.length ? Promise.all(before).then(() => undefined) : Promise.resolve();
    const chained = gate.then(() => mine);
    for (let c = first; c <= last; c++) this.held.set(c, chained);
    await gate;
    return () => {
      release();
      for (let c = first; c <= last; c++) if (this.held.get(c) === chained) this.held.delete(c);
    };
  }
}
