/**
 * For the send/receive tests of the zfs and btrfs drivers: one driver's send
 * piped into its own receive, a dataset's snapshot identities, and a link cut
 * mid-transfer.
 *
 *   const { replicate, ids } = replicationWith(driver);
 *   await replicate(src, 's2', dst, { from: 's1' });
 *   t.deepEqual(await ids(dst), await ids(src));
 */
import { Readable } from 'node:stream';
import type { Driver, ReceiveResult } from '../../src/services/storage/driver.js';

export interface ReplicateOptions {
  /** incremental base */
  from?: string;
  /** default false */
  recursive?: boolean;
  /** default false */
  force?: boolean;
}

export function replicationWith(driver: Driver) {
  return {
    /** `send` of `src@snapshot` straight into `receive` on `dst` */
    async replicate(src: string, snapshot: string, dst: string, opts: ReplicateOptions = {}): Promise<ReceiveResult> {
      const recursive = opts.recursive ?? false;
      const stream = driver.send(src, snapshot, { recursive, ...(opts.from ? { from: opts.from } : {}) });
      return driver.receive(dst, stream, { recursive, force: opts.force ?? false });
    },
    /** the dataset's snapshots as `name=id`, oldest first */
    async ids(dataset: string): Promise<string[]> {
      return (await driver.listSnapshots(dataset)).map((s) => `${s.name}=${s.id}`);
    },
  };
}

/** the first `bytes` of a stream, then a clean end: a link cut mid-transfer */
export function cutAfter(stream: Readable, bytes: number): Readable {
  return Readable.from(
    (async function* () {
      let left = bytes;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (chunk.length >= left) {
          yield chunk.subarray(0, left);
          break;
        }
        left -= chunk.length;
        yield chunk;
      }
    })(),
  );
}

/** the stream, aborting `controller` once its first chunk has passed: a receive cancelled mid-transfer */
export function abortAfterFirstChunk(stream: Readable, controller: AbortController): Readable {
  return Readable.from(
    (async function* () {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        yield chunk;
        controller.abort();
      }
    })(),
  );
}
