/**
 * The first command of a btrfs send stream says what it brings, before any
 * byte is received: `btrfs-stream\0`, a u32 version, then commands of
 * (u32 length, u16 command, u32 crc) followed by TLV attributes (u16 type,
 * u16 length). The first command is SUBVOL (a full stream) or SNAPSHOT (an
 * incremental one, naming its base by CLONE_UUID). Little-endian, the same
 * in protocol versions 1 and 2.
 */
import type { Readable } from 'node:stream';
import { peek } from '../exec.js';

const MAGIC = Buffer.from('btrfs-stream\0', 'latin1');
const HEADER = MAGIC.length + 4;
const COMMAND_HEADER = 10;
const CMD_SUBVOL = 1;
const CMD_SNAPSHOT = 2;
const ATTR_UUID = 1;
const ATTR_PATH = 15;
const ATTR_CLONE_UUID = 20;
/** far above any first command (a name and two uuids) */
const FIRST_COMMAND_MAX = 8192;

export interface BtrfsStreamDescription {
  /** the snapshot's name, as `btrfs receive` will create it */
  name: string;
  /** uuid of the sent snapshot: the received_uuid it gets here */
  uuid: string;
  /** uuid (or received uuid) of the base on the sender, for an incremental stream */
  baseUuid: string | null;
}

export class BtrfsStreamFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BtrfsStreamFormatError';
  }
}

export async function describeBtrfsStream(stream: Readable): Promise<{ description: BtrfsStreamDescription; rest: Readable }> {
  const { head, rest } = await peek(stream, HEADER + COMMAND_HEADER + FIRST_COMMAND_MAX);
  try {
    return { description: parseFirstCommand(head), rest };
  } catch (error) {
    rest.destroy();
    throw error;
  }
}

export function parseFirstCommand(head: Buffer): BtrfsStreamDescription {
  if (head.length < HEADER || !head.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new BtrfsStreamFormatError(head.length < HEADER ? `The stream ended after ${head.length} bytes, before a whole btrfs stream header.` : 'The stream is not a btrfs send stream.');
  }
  if (head.length < HEADER + COMMAND_HEADER) throw new BtrfsStreamFormatError('The stream ends before its first command.');
  const length = head.readUInt32LE(HEADER);
  const command = head.readUInt16LE(HEADER + 4);
  if (command !== CMD_SUBVOL && command !== CMD_SNAPSHOT) {
    throw new BtrfsStreamFormatError(`The btrfs stream starts with command ${command}, not a subvolume or snapshot.`);
  }
  const start = HEADER + COMMAND_HEADER;
  if (head.length < start + length) throw new BtrfsStreamFormatError('The stream ends inside its first command.');
  const attributes = new Map<number, Buffer>();
  for (let at = start; at + 4 <= start + length; ) {
    const type = head.readUInt16LE(at);
    const size = head.readUInt16LE(at + 2);
    attributes.set(type, head.subarray(at + 4, at + 4 + size));
    at += 4 + size;
  }
  const name = attributes.get(ATTR_PATH)?.toString('utf8');
  const uuid = attributes.get(ATTR_UUID);
  if (!name || !uuid) throw new BtrfsStreamFormatError('The first command of the btrfs stream has no name or uuid.');
  const base = command === CMD_SNAPSHOT ? attributes.get(ATTR_CLONE_UUID) : undefined;
  return { name, uuid: formatUuid(uuid), baseUuid: base ? formatUuid(base) : null };
}

const formatUuid = (bytes: Buffer): string => {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
};
