/** auto-cdp: live mirrors of zvols to other appliances (src/services/cdp). */
import type { CommandContext, CommandFamily, CommandSpec, InstanceKind, Output } from './grammar/types.js';
import { count, formatBytes, text } from './values.js';
import { confirmed, NOTHING_CHANGED } from './ask.js';
import { MIRROR_MODES, MIRROR_PROPERTIES, DEFAULT_PEER_TIMEOUT_MS, parseMode, parsePeerTimeout, PEER_TIMEOUT_RANGE, targetLabel, type MirrorMode, type MirrorTarget } from '../services/cdp/model.js';
import type { MirrorView } from '../services/cdp/index.js';
import type { TargetStatus } from '../services/cdp/status.js';
import { historyTable } from './history-table.js';

const words = {
  'auto-cdp': 'live block mirrors of zvols to other appliances (sync or async, one or more targets)',
  mode: 'sync (a write is acknowledged when every copy has it) or async (shipped in write order, lag shown)',
  pause: 'stop mirroring to a target; its dirty map keeps what it misses',
  resume: 'mirror to a paused target again, sending only the dirty chunks',
  extend: 'add a target appliance to a mirror',
  detach: 'remove a target appliance from a mirror',
  verify: "compare every chunk's hash with the targets' copies",
};

const mode = { name: 'sync|async', parse: (raw: string, label: string) => parseMode(raw, label), values: () => MIRROR_MODES };

function liveOf(v: MirrorView, t: MirrorTarget): TargetStatus | undefined {
  return v.status?.targets.find((s) => s.host === t.host);
}

function targetText(v: MirrorView, t: MirrorTarget): string {
  const live = liveOf(v, t);
  const state = live && !t.paused ? { ...t, state: live.state as MirrorTarget['state'], reason: live.reason } : t;
  return targetLabel(state, live?.syncedPercent ?? null);
}

function lagText(v: MirrorView): string {
  if (v.config.role !== 'master') return '-';
  const lags = v.config.targets.map((t) => liveOf(v, t)).filter((s): s is TargetStatus => Boolean(s));
  if (!lags.length) return '-';
  const bytes = Math.max(...lags.map((s) => s.lagBytes));
  const secs = Math.max(...lags.map((s) => s.lagSeconds));
  return `${formatBytes(bytes)} ${secs.toFixed(1)}s`;
}

function peerText(v: MirrorView): string {
  return v.config.role === 'master' ? v.config.targets.map((t) => `${t.host}:${t.zvol}`).join(', ') || '-' : `${v.config.master?.host}:${v.config.master?.zvol}`;
}

const showAll: CommandSpec = {
  path: 'show auto-cdp',
  help: 'every mirror with its role, peer, mode, per-target state and lag',
  async run(ctx) {
    const all = ctx.services.cdp.list();
    return {
      kind: 'table',
      columns: [
        { key: 'name', header: 'NAME' },
        { key: 'zvol', header: 'ZVOL' },
        { key: 'role', header: 'ROLE' },
        { key: 'peer', header: 'PEER', flexible: true },
        { key: 'mode', header: 'MODE' },
        { key: 'state', header: 'STATE', flexible: true },
        { key: 'lag', header: 'LAG', align: 'right', drop: 1 },
      ],
      rows: all.map((v) => ({
        name: v.config.name,
        zvol: v.config.zvol,
        role: v.config.role,
        peer: peerText(v),
        mode: v.config.mode,
        state: v.config.role === 'master' ? v.config.targets.map((t) => `${t.host}: ${targetText(v, t)}`).join(', ') : 'slave',
        lag: lagText(v),
      })),
      data: all,
      empty: "No auto-cdp services. Create one with 'create auto-cdp --zvol fs:tank/vm1 --to-host HOST --mode sync'.",
    };
  },
};

const showOne: CommandSpec = {
  path: 'show auto-cdp :auto-cdp',
  help: 'one mirror: its zvol, role and epoch, mode, and each target with its state and lag',
  async run(ctx, input) {
    const v = ctx.services.cdp.one(input.instance!);
    const c = v.config;
    const fields: [string, string][] = [
      ['name', `auto-cdp:${c.name}`],
      ['zvol', c.zvol],
      ['size', formatBytes(c.size)],
      ['role', `${c.role} (epoch ${c.epoch})`],
      ['mode', c.mode],
      ['peer timeout', `${(c.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_MS) / 1000} sec`],
    ];
    if (c.master) fields.push(['master', `${c.master.host}:${c.master.zvol}`]);
    for (const t of c.targets) {
      const live = liveOf(v, t);
      fields.push([`target ${t.host}`, `${t.zvol}: ${targetText(v, t)}${live ? `, ${live.dirtyChunks} dirty chunk(s), lag ${formatBytes(live.lagBytes)} ${live.lagSeconds.toFixed(1)}s` : ''}`]);
    }
    fields.push(['description', c.description || '-'], ['created', c.createdAt]);
    return { kind: 'record', fields, data: v };
  },
};

const create: CommandSpec = {
  path: 'create auto-cdp',
  help: 'mirror a zvol to another appliance, live (a dialog, or all by options)',
  details:
    'The other appliance gets the zvol (created if missing, with the same size) and a copy of the service. A target zvol that holds data is refused unless --no-full-sync says it is an older copy or a seed: then only chunks whose hashes differ are sent.',
  options: [
    { name: '--zvol', help: 'the zvol to mirror, e.g. fs:tank/vm1', value: text('DATASET') },
    { name: '--to-host', help: 'the appliance to mirror to (bound with ssh-bind or local-bind)', value: text('HOST') },
    { name: '--to-zvol', help: 'the zvol there (default: the same name)', value: text('DATASET') },
    { name: '--mode', help: 'sync or async', value: mode },
    { name: '--no-full-sync', help: 'the target already holds a copy (a seed or an older mirror): compare chunk hashes and send only differences' },
    {
      name: '--peer-timeout',
      help: `seconds without an answer after which the peer is lost and its fencing policy decides (${PEER_TIMEOUT_RANGE.min} to ${PEER_TIMEOUT_RANGE.max}; default ${DEFAULT_PEER_TIMEOUT_MS / 1000})`,
      value: { name: 'SECONDS', parse: (raw: string, label: string) => parsePeerTimeout(raw, label) },
    },
  ],
  async run(ctx, input) {
    const o = input.options;
    let zvol = o.zvol as string | undefined;
    let toHost = o['to-host'] as string | undefined;
    let chosenMode = o.mode as MirrorMode | undefined;
    const toZvol = o['to-zvol'] as string | undefined;
    if (!zvol || !toHost || !chosenMode) {
      if (!ctx.interactive) {
        const missing = [!zvol && '--zvol', !toHost && '--to-host', !chosenMode && '--mode'].filter(Boolean).join(', ');
        throw new Error(`'create auto-cdp' needs ${missing} when there is no terminal to ask on.`);
      }
      zvol ??= await ctx.dialogs.select(
        'Zvol to mirror',
        (await ctx.services.zvols.list()).map((z) => ({ value: z.name, description: formatBytes(z.size) })),
      );
      toHost ??= await ctx.dialogs.select(
        'Appliance to mirror to',
        ctx.services.peers.store.outbound().map((p) => ({ value: p.id, description: p.address })),
      );
      chosenMode ??= await ctx.dialogs.select<MirrorMode>('Mode', [
        { value: 'sync', description: 'a write is acknowledged when both copies have it' },
        { value: 'async', description: 'acknowledged here at once, shipped in write order' },
      ]);
    }
    ctx.access.dataset(zvol);
    if (toZvol) ctx.access.dataset(toZvol);
    if (!(await confirmed(ctx, `Mirror ${zvol} to ${toHost}${toZvol ? `:${toZvol}` : ''} in ${chosenMode} mode?`))) return NOTHING_CHANGED;
    const c = await ctx.services.cdp.create({ zvol, toHost, toZvol, mode: chosenMode, noFullSync: Boolean(o['no-full-sync']), peerTimeoutMs: o['peer-timeout'] as number | undefined });
    const t = c.targets[0];
    return {
      kind: 'message',
      text: `Created auto-cdp:${c.name}: ${c.zvol} => ${t.host}:${t.zvol}, ${c.mode}. The daemon mirrors it (${t.fullSync === 'compare' ? 'comparing chunk hashes first' : 'first sending every allocated chunk'}).`,
      data: c,
    };
  },
};

const destroy: CommandSpec = {
  path: 'destroy auto-cdp :auto-cdp',
  help: 'stop a mirror and remove it on both appliances (asks first); both zvols stay',
  async run(ctx, input) {
    const name = input.instance!;
    const c = ctx.services.cdp.config(name);
    if (c.role !== 'master') throw new Error(`auto-cdp:${name} is the slave copy of ${c.master?.host}'s mirror: destroy it there (the copy here goes with it).`);
    if (!(await confirmed(ctx, `Destroy auto-cdp:${name} on this appliance and on ${c.targets.map((t) => t.host).join(', ')}?`, 'Both zvols stay, with their data.'))) return NOTHING_CHANGED;
    const { left } = await ctx.services.cdp.destroy(name);
    return { kind: 'message', text: `Destroyed auto-cdp:${name}; the zvols stay.${left.length ? ` Not reached, so its copy stays there: ${left.join('; ')}.` : ''}`, data: { left } };
  },
};

const setupMode: CommandSpec = {
  path: 'setup auto-cdp :auto-cdp mode <MODE>',
  help: 'switch a mirror between sync and async, live',
  args: { MODE: { ...mode, help: 'sync or async' } },
  async run(ctx, input) {
    const { config, unreached } = await ctx.services.cdp.setMode(input.instance!, input.args.MODE as MirrorMode);
    return { kind: 'message', text: `auto-cdp:${config.name} is now ${config.mode}.${unreached.length ? ` Not told yet: ${unreached.join('; ')}.` : ''}`, data: config };
  },
};

const setupProperty: CommandSpec = {
  path: 'setup auto-cdp :auto-cdp property <KEY> <VALUE>',
  help: `set a property of a mirror (${MIRROR_PROPERTIES.join(', ')})`,
  args: {
    KEY: { ...text('KEY', () => MIRROR_PROPERTIES), help: 'the property' },
    VALUE: { ...text('VALUE'), help: 'its value', rest: true },
  },
  async run(ctx, input) {
    const c = await ctx.services.cdp.setProperty(input.instance!, input.args.KEY as string, (input.args.VALUE as string[]).join(' '));
    return { kind: 'message', text: `Set ${String(input.args.KEY)} of auto-cdp:${c.name}.`, data: c };
  },
};

function pauseResume(paused: boolean): CommandSpec {
  const verb = paused ? 'pause' : 'resume';
  return {
    path: `setup auto-cdp :auto-cdp ${verb} [<HOST>]`,
    help: paused ? 'stop mirroring to one target (or all); changes are kept in its dirty map' : 'mirror to a paused target again: only the dirty chunks are sent',
    args: { HOST: { ...text('HOST'), help: 'the target appliance (default: every target)' } },
    async run(ctx, input) {
      const c = await ctx.services.cdp.setPaused(input.instance!, input.args.HOST as string | undefined, paused);
      return { kind: 'message', text: `auto-cdp:${c.name}: ${paused ? 'paused' : 'resumed'} to ${(input.args.HOST as string | undefined) ?? c.targets.map((t) => t.host).join(', ')}.`, data: c };
    },
  };
}

const extend: CommandSpec = {
  path: 'setup auto-cdp :auto-cdp extend <HOST>',
  help: 'mirror to one more appliance (a third copy); it is synced while the mirror goes on',
  args: { HOST: { ...text('HOST'), help: 'the appliance to add (bound with ssh-bind or local-bind)' } },
  options: [
    { name: '--to-zvol', help: 'the zvol there (default: the same name)', value: text('DATASET') },
    { name: '--no-full-sync', help: 'it already holds a copy: compare chunk hashes and send only differences' },
  ],
  async run(ctx, input) {
    const toZvol = input.options['to-zvol'] as string | undefined;
    if (toZvol) ctx.access.dataset(toZvol);
    const c = await ctx.services.cdp.extend(input.instance!, input.args.HOST as string, { toZvol, noFullSync: Boolean(input.options['no-full-sync']) });
    const t = c.targets[c.targets.length - 1];
    return { kind: 'message', text: `auto-cdp:${c.name} now mirrors to ${c.targets.map((x) => x.host).join(', ')}; ${t.host}:${t.zvol} is being synced.`, data: c };
  },
};

const detach: CommandSpec = {
  path: 'setup auto-cdp :auto-cdp detach <HOST>',
  help: 'stop mirroring to one target (asks first); its zvol stays there with its data',
  args: { HOST: { ...text('HOST'), help: 'the target appliance' } },
  async run(ctx, input) {
    const name = input.instance!;
    const host = input.args.HOST as string;
    if (!(await confirmed(ctx, `Stop mirroring auto-cdp:${name} to ${host}?`, 'Its zvol stays there; extending to it again later syncs it again.'))) return NOTHING_CHANGED;
    const { config, left } = await ctx.services.cdp.detach(name, host);
    return { kind: 'message', text: `auto-cdp:${name} no longer mirrors to ${host}.${left ? ` Not reached, so its copy stays there: ${left}.` : ''}`, data: config };
  },
};

const verify: CommandSpec = {
  path: 'run auto-cdp :auto-cdp verify',
  help: "compare the sha256 of every chunk with the targets' copies while clients write; --repair resyncs what differs",
  options: [
    { name: '--repair', help: 'send the chunks found out of sync again' },
    { name: '--host', help: 'verify this target only', value: text('HOST') },
  ],
  async run(ctx, input) {
    ctx.progress(`Verifying auto-cdp:${input.instance!} …`);
    const results = await ctx.services.cdp.verify(input.instance!, input.options.host as string | undefined, Boolean(input.options.repair));
    const lines = results.map(
      (r) =>
        `${r.host}: ${r.checked} chunk(s) compared, ${r.outOfSync.length} out of sync${
          r.outOfSync.length
            ? ` (offsets ${r.outOfSync
                .slice(0, 8)
                .map((c) => formatBytes(c * 65536))
                .join(', ')}${r.outOfSync.length > 8 ? ', …' : ''})${r.repaired ? ', being resynced' : `; 'run auto-cdp :${input.instance!} verify --repair' resyncs them`}`
            : ''
        }`,
    );
    return { kind: 'lines', lines, data: results };
  },
};

const logtail: CommandSpec = {
  path: 'show auto-cdp :auto-cdp logtail',
  help: 'the last lines of the mirror log; -f follows new lines',
  options: [
    { name: '-f', alias: '--follow', help: 'keep showing new lines until Ctrl-C or q' },
    { name: '-n', alias: '--lines', help: 'how many lines to start with (default 20)', value: count('N', 0, 100_000) },
  ],
  async run(ctx, input) {
    const log = ctx.services.cdp.log(input.instance!);
    const initial = log.tail((input.options.n as number | undefined) ?? 20);
    if (input.options.f) return { kind: 'follow', initial, follow: (signal) => log.follow(signal) };
    return { kind: 'lines', lines: initial, data: initial };
  },
};

const history: CommandSpec = {
  path: 'show auto-cdp :auto-cdp history',
  help: 'every resync to a target: start, result, bytes sent, rate, chunks or the error',
  options: [{ name: '-n', alias: '--lines', help: 'how many resyncs (default 20)', value: count('N', 1, 100_000) }],
  async run(ctx, input) {
    return historyTable(ctx.services.cdp.history(input.instance!).list((input.options.n as number | undefined) ?? 20), 'CHUNKS / ERROR');
  },
};

const logAll: CommandSpec = {
  path: 'show auto-cdp :auto-cdp log',
  help: 'the whole mirror log',
  async run(ctx: CommandContext, input): Promise<Output> {
    const lines = await ctx.services.cdp.log(input.instance!).all();
    return { kind: 'lines', lines, data: lines };
  },
};

/** `:NAME` of an auto-cdp mirror */
const cdpInstances: InstanceKind = {
  kind: 'auto-cdp',
  help: 'an auto-cdp mirror',
  list: (ctx) => ctx.services.cdp.list().map((v) => ({ name: v.config.name, description: `${v.config.zvol} (${v.config.role}, ${v.config.mode})` })),
};

export const cdpFamily: CommandFamily = { words, instances: [cdpInstances], commands: [showAll, showOne, create, destroy, setupMode, setupProperty, pauseResume(true), pauseResume(false), extend, detach, verify, logtail, logAll, history] };
