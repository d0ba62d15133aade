/**
 * Two appliances with auto-cdp daemons, for the mirror tests: the pair
 * (local-bind), a daemon child with its lines, qemu-io on an export, the
 * byte-for-byte comparison of both exports, and the daemon's figures.
 */
import { execa } from 'execa';
import type { TargetStatus } from '../../src/services/cdp/status.js';
import { ok, type Appliance } from '../peer/_fixture.js';

export const MiB = 1024 * 1024;

export { compare, pair, startDaemon, uri } from './_pair.js';

export async function qemuIo(target: string, ...cmds: string[]): Promise<void> {
  const r = await execa('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), target], { reject: false });
  if (r.exitCode !== 0 || /error|failed/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io ${cmds.join('; ')}: ${r.stdout}${r.stderr}`);
}

export interface Shown {
  config: { targets: { paused: boolean }[] };
  status: { targets: TargetStatus[] } | null;
}

export async function status(a: Appliance): Promise<Shown['status']> {
  return (JSON.parse(await ok(a, 'show auto-cdp :tank-vm1-000 --json')) as Shown).status;
}

export type TargetFigures = NonNullable<Shown['status']>['targets'][number];

/** the daemon's figures once every target (or the first) satisfies `ok`; fails after 3 minutes naming the last figures */
export async function statusUntil(a: Appliance, ok: (x: TargetFigures) => boolean, every = false): Promise<NonNullable<Shown['status']>> {
  let last: Shown['status'] = null;
  for (const start = Date.now(); Date.now() - start < 180_000; ) {
    last = await status(a);
    if (last && (every ? last.targets.every(ok) : ok(last.targets[0]))) return last;
  }
  throw new Error(`the mirror's figures never got there; last: ${JSON.stringify(last)}`);
}
