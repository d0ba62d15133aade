/**
 * What the mirror tests (mirror, dedupe, resync-kill) add to _pair.ts: a
 * qemu-io that throws when it fails, and MiB; the rest is _pair.ts's.
 */
import { qemuIo as qemuIoResult } from './_pair.js';

export const MiB = 1024 * 1024;

export { compare, mirrorBetween, mirrored, pair, startDaemon, status, statusUntil, uri } from './_pair.js';

/** qemu-io on an export, thrown when it fails */
export async function qemuIo(target: string, ...cmds: string[]): Promise<void> {
  const r = await qemuIoResult(target, ...cmds);
  if (r.exitCode !== 0 || /error|failed/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io ${cmds.join('; ')}: ${r.stdout}${r.stderr}`);
}
