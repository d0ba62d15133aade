/**
 * What the NBD server serves: a block volume behind one small interface, so
 * the protocol (handshake, transmission) knows nothing of how blocks are
 * stored (a raw file, an fs-driver zvol with its dirty-chunk map, a mirror).
 * As in nbdkit, storage is a plugin and the protocol never reaches past this.
 *
 * Errors: a volume throws an Error whose `code` is one of VolumeErrorCode;
 * the server turns it into the NBD error a client expects (anything else is
 * EIO). A volume never sees a request past its end or misaligned to its
 * minimum block size: the server refuses those itself.
 */

export type VolumeErrorCode = 'EPERM' | 'EIO' | 'ENOMEM' | 'EINVAL' | 'ENOSPC' | 'EOVERFLOW' | 'ENOTSUP' | 'ESHUTDOWN';

export class VolumeError extends Error {
  constructor(
    readonly code: VolumeErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'VolumeError';
  }
}

export interface WriteFlags {
  /** NBD_CMD_FLAG_FUA: durable before the reply */
  fua: boolean;
  /**
   * the data buffer is the caller's again once the write resolved (the NBD
   * server's pool reuses it): a volume that needs it longer (a mirror frame
   * still to go out) calls keep() before resolving, and the function it
   * returns once done with it. Absent: such a volume copies it.
   */
  keep?(): () => void;
}

export interface ZeroFlags extends WriteFlags {
  /** NBD_CMD_FLAG_NO_HOLE: the range must stay allocated */
  noHole: boolean;
}

/** one extent of NBD_CMD_BLOCK_STATUS (base:allocation) */
export interface Extent {
  length: number;
  /** NBD_STATE_HOLE */
  hole: boolean;
  /** NBD_STATE_ZERO */
  zero: boolean;
}

export interface BlockVolume {
  /** bytes; a multiple of minBlockSize */
  readonly size: number;
  /** the smallest request the volume accepts (NBD_INFO_BLOCK_SIZE minimum), a power of two, usually 512 */
  readonly minBlockSize: number;
  /** the block size it prefers (NBD_INFO_BLOCK_SIZE preferred), e.g. the zvol's chunk */
  readonly preferredBlockSize: number;
  readonly readOnly: boolean;
  /**
   * optional: a flush on any connection to this volume makes every connection's
   * completed writes durable (NBD_FLAG_CAN_MULTI_CONN), so clients may open several
   */
  readonly canMultiConn?: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  /** optional: read into the caller's buffer (buf.length bytes), so the server can reuse its buffers */
  readInto?(offset: number, buf: Buffer): Promise<void>;
  /** acknowledged (resolved) writes are readable at once; durable once flushed, or at once with fua */
  write(offset: number, data: Buffer, flags: WriteFlags): Promise<void>;
  /** every write resolved before this call is durable when it resolves */
  flush(): Promise<void>;
  /** the range may be discarded (reads may then return zeroes) */
  trim(offset: number, length: number, flags: WriteFlags): Promise<void>;
  /** the range reads as zeroes afterwards */
  writeZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void>;
  /** which parts of a range are holes or zeroes; optional */
  extents?(offset: number, length: number): Promise<Extent[]>;
  /** the connection that opened it is gone; the volume may release what it holds */
  close(): Promise<void>;
}

/** What the server can export, by name (the export name is the dataset name, e.g. `fs:tank/vm1`). */
export interface ExportSource {
  /** every export's name and a one-line description, for NBD_OPT_LIST */
  list(): Promise<{ name: string; description: string }[]>;
  /** open an export for one connection; null when there is no such export */
  open(name: string): Promise<BlockVolume | null>;
}
