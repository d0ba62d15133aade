/** The auto-sync family: create, show, setup, run and destroy services. */
import type { CommandContext, CommandFamily, CommandSpec, InstanceKind, Output } from './grammar/types.js';
import { count, formatBytes, formatTime, retention, scheduleType, text, yesNo } from './values.js';
import { confirmed, NOTHING_CHANGED } from './ask.js';
import { describe as describeSchedule } from '../services/schedule.js';
import { EDITABLE_KEYS, endpointLabel, isOrphanOf, localEndpoint, peerHostOf, PROPERTIES, RETENTION_HELP, type CreateRequest, type ServiceView, type SidePlan, type Winner } from '../services/auto-sync/index.js';
import { NoTerminalError } from './dialogs.js';
import { dashboardSource } from '../services/auto-sync/dashboard-data.js';
import { historyTable } from './history-table.js';

const words = {
  'auto-sync': 'replication services: a true mirror of a folder on another dataset or appliance',
  property: 'the properties of a service',
  logtail: 'the end of the service log (-f follows it)',
  log: 'the whole service log',
  enable: 'run on schedule again (clears maintenance)',
  disable: 'stop running on schedule',
  run: 'replicate now',
  status: 'up or warn, why, and the transfer in flight',
  resync: 'start over with a full sync after a broken chain (the old destination is kept)',
  'reverse-direction': 'swap master and direction with the other appliance (disaster recovery from the non-master)',
  orphans: "what this appliance's copy had written after the last replication, kept when it was rolled back",
  orphan: 'one kept orphan snapshot (see show auto-sync :NAME orphans)',
  'resolve-split-brain': 'after split brain: keep one copy as the source; the other keeps its changes as an orphan',
  history: 'every attempt: start, end, result, bytes, rate, snapshot, error',
  snapshots: "each side's snapshots: which retention rule keeps each marker, and which the next run prunes",
  prune: 'thin the markers of both sides now, as keep_src and keep_dst say (--dry-run: only say what would go)',
  dashboard: 'a live view of every service: state, lag, transfer rates and the log',
};

function row(v: ServiceView): Record<string, string> {
  const c = v.config;
  return {
    name: c.name,
    source: endpointLabel(c.source),
    destination: endpointLabel(c.destination),
    direction: c.direction,
    schedule: describeSchedule(c.schedule),
    role: v.receivedFrom ? 'received' : c.role,
    state: v.receivedFrom ? `received from ${v.receivedFrom}` : v.state,
    lastRun: formatTime(v.run.lastRunAt),
    status: v.status,
  };
}

function json(v: ServiceView) {
  return { ...v.config, state: v.state, status: v.status, run: v.run, runningSince: v.runningSince, receivedFrom: v.receivedFrom };
}

const showAll: CommandSpec = {
  path: 'show auto-sync',
  help: 'list auto-sync services, and those of other appliances received here (read-only)',
  async run(ctx) {
    const views = [...ctx.services.autoSync.list(), ...ctx.services.autoSync.received()];
    return {
      kind: 'table',
      columns: [
        { key: 'name', header: 'NAME' },
        { key: 'source', header: 'SOURCE', flexible: true },
        { key: 'destination', header: 'DESTINATION', flexible: true },
        { key: 'direction', header: 'DIRECTION', drop: 4 },
        { key: 'schedule', header: 'SCHEDULE', flexible: true, drop: 3 },
        { key: 'role', header: 'ROLE', drop: 2 },
        { key: 'state', header: 'STATE' },
        { key: 'lastRun', header: 'LAST RUN', drop: 1 },
        { key: 'status', header: 'STATUS' },
      ],
      rows: views.map(row),
      // built only for --json: a thousand services' JSON is a tenth of a table's start-up
      get data() {
        return views.map(json);
      },
      empty: "No auto-sync services. Create one with 'create auto-sync'.",
    };
  },
};

const showOne: CommandSpec = {
  path: 'show auto-sync :auto-sync',
  help: 'all properties and the last run of a service',
  async run(ctx, input) {
    const v = ctx.services.autoSync.view(input.instance!);
    const props = ctx.services.autoSync.getProperty(v.config.name);
    const fields: [string, string][] = [
      ['service', `auto-sync:${v.config.name}`],
      ...(v.receivedFrom ? [['received_from', `${v.receivedFrom} (it runs the service; read-only here)`] as [string, string]] : []),
      ['state', v.state + (v.config.maintenance ? ` (${v.config.maintenance.reason})` : '')],
      ['status', v.status],
      ...props.filter((p) => !['name', 'maintenance'].includes(p.key)).map((p) => [p.key, p.value] as [string, string]),
      ['last_run', formatTime(v.run.lastRunAt)],
      ['last_success', formatTime(v.run.lastSuccessAt)],
      ['last_result', v.run.lastResult ?? '-'],
      ['last_marker', v.run.lastMarker ?? '-'],
      ['last_bytes', formatBytes(v.run.lastBytes)],
      ['last_duration', `${(v.run.lastDurationMs / 1000).toFixed(1)} sec`],
    ];
    if (v.run.lastError) fields.push(['last_error', v.run.lastError]);
    return { kind: 'record', fields, data: json(v) };
  },
};

const propertyTable = (rows: { key: string; value: string; description: string; editable: boolean }[]): Output => ({
  kind: 'table',
  columns: [
    { key: 'key', header: 'PROPERTY' },
    { key: 'value', header: 'VALUE', flexible: true },
    { key: 'editable', header: 'EDITABLE' },
    { key: 'description', header: 'DESCRIPTION', flexible: true },
  ],
  rows: rows.map((r) => ({ ...r, editable: r.editable ? 'yes' : 'no' })),
  data: Object.fromEntries(rows.map((r) => [r.key, r.value])),
});

const propertyKey = text('KEY', () => PROPERTIES.map((p) => p.key));

const showProperty: CommandSpec = {
  path: 'show auto-sync :auto-sync property [<KEY>]',
  help: 'show the properties of a service, or one of them',
  args: { KEY: { ...propertyKey, help: 'the property to show' } },
  async run(ctx, input) {
    return propertyTable(ctx.services.autoSync.getProperty(input.instance!, input.args.KEY as string | undefined));
  },
};

const setupProperty: CommandSpec = {
  path: 'setup auto-sync :auto-sync property <KEY> <VALUE>',
  help: 'change a property of a service (each key checks its value)',
  args: {
    KEY: { name: 'KEY', help: 'the property to change', values: () => EDITABLE_KEYS },
    VALUE: { name: 'VALUE', help: 'its new value' },
  },
  async run(ctx, input) {
    const key = input.args.KEY as string;
    if (key === 'from_fs' || key === 'to_fs') ctx.access.dataset(input.args.VALUE as string);
    await ctx.services.autoSync.setProperty(input.instance!, key, input.args.VALUE as string);
    const notShared = await ctx.services.reverse.shareProperty(input.instance!, key, input.args.VALUE as string);
    if (notShared) ctx.progress(`Warning: ${notShared}.`);
    return propertyTable(ctx.services.autoSync.getProperty(input.instance!, key));
  },
};

const logtail: CommandSpec = {
  path: 'show auto-sync :auto-sync logtail',
  help: 'the last lines of the service log; -f follows new lines',
  options: [
    { name: '-f', alias: '--follow', help: 'keep showing new lines until Ctrl-C or q' },
    { name: '-n', alias: '--lines', help: 'how many lines to start with (default 20)', value: count('N', 0, 100_000) },
  ],
  async run(ctx, input) {
    const log = ctx.services.autoSync.log(input.instance!);
    const initial = log.tail((input.options.n as number | undefined) ?? 20);
    if (input.options.f) return { kind: 'follow', initial, follow: (signal) => log.follow(signal) };
    return { kind: 'lines', lines: initial, data: initial };
  },
};

const dashboard: CommandSpec = {
  path: 'show auto-sync dashboard',
  help: 'a live view of every service: state, lag, transfer rates and the log (q to quit)',
  details: 'Up and down select a service, r runs it now, q or Ctrl-C quits. Without a terminal, or with --json, it prints the figures once.',
  async run(ctx) {
    return { kind: 'dashboard', ...dashboardSource(ctx.services.autoSync) };
  },
};

const logAll: CommandSpec = {
  path: 'show auto-sync :auto-sync log',
  help: 'the whole service log',
  async run(ctx, input) {
    const lines = await ctx.services.autoSync.log(input.instance!).all();
    return { kind: 'lines', lines, data: lines };
  },
};

async function runNow(ctx: CommandContext, service: string): Promise<Output> {
  let last = 0;
  const result = await ctx.services.autoSync.run(service, {
    signal: ctx.signal,
    onProgress: (bytes) => {
      if (bytes - last >= 64 << 20) {
        last = bytes;
        ctx.progress(`auto-sync:${service}: ${formatBytes(bytes)} sent`);
      }
    },
  });
  return {
    kind: 'message',
    text: `auto-sync:${service}: ${result.full ? 'full' : 'incremental'} sync OK, ${formatBytes(result.bytes)} in ${(result.durationMs / 1000).toFixed(1)} sec (${result.marker})`,
    data: result,
  };
}

const setupRun: CommandSpec = { path: 'setup auto-sync :auto-sync run', help: 'replicate now', run: (ctx, input) => runNow(ctx, input.instance!) };
const runCmd: CommandSpec = { path: 'run auto-sync :auto-sync', help: 'replicate now', run: (ctx, input) => runNow(ctx, input.instance!) };

const resync: CommandSpec = {
  path: 'setup auto-sync :auto-sync resync',
  help: 'a full sync after a broken chain; the old destination is kept under a new name (asks first)',
  async run(ctx, input) {
    const name = input.instance!;
    const c = ctx.services.autoSync.config(name);
    const question = `Resync 'auto-sync:${name}' with a full sync of ${c.source.dataset} to ${c.destination.dataset}?`;
    const help = `The destination has no snapshot in common with the source. It is kept under a new name (${c.destination.dataset}-resync-DATE) and a full copy is sent; nothing is destroyed.`;
    if (!(await confirmed(ctx, question, help))) return NOTHING_CHANGED;
    const result = await ctx.services.autoSync.run(name, { resync: true, signal: ctx.signal });
    return { kind: 'message', text: `auto-sync:${name}: resync OK, ${result.full ? 'full' : 'incremental'} sync of ${formatBytes(result.bytes)} (${result.marker}).`, data: result };
  },
};

const enable: CommandSpec = {
  path: 'setup auto-sync :auto-sync enable',
  help: 'run the service on its schedule again; clears maintenance',
  async run(ctx, input) {
    const c = await ctx.services.autoSync.setEnabled(input.instance!, true);
    return { kind: 'message', text: `auto-sync:${c.name} enabled.`, data: c };
  },
};

const disable: CommandSpec = {
  path: 'setup auto-sync :auto-sync disable',
  help: 'stop running the service on its schedule',
  async run(ctx, input) {
    const c = await ctx.services.autoSync.setEnabled(input.instance!, false);
    return { kind: 'message', text: `auto-sync:${c.name} disabled.`, data: c };
  },
};

const destroy: CommandSpec = {
  path: 'destroy auto-sync :auto-sync',
  help: 'remove a service, on both appliances when it is reverse-capable (its snapshots and data stay)',
  async run(ctx, input) {
    const service = input.instance!;
    const c = ctx.services.autoSync.config(service);
    const other = c.reverseCapable && c.direction !== 'local-to-local' ? peerHostOf(c) : null;
    const question = other ? `Destroy auto-sync service 'auto-sync:${service}' here and its copy on ${other}?` : `Destroy auto-sync service 'auto-sync:${service}'?`;
    const help = other
      ? `The service stops and its configuration is removed here and on ${other}, which keeps a copy (reverse-capable); if ${other} is down, its copy goes at its next contact and cannot bring the service back. Replicated data and marker snapshots are kept on both sides.`
      : 'The service stops and its configuration is removed. Replicated data and marker snapshots are kept on both sides.';
    if (!(await confirmed(ctx, question, help))) return NOTHING_CHANGED;
    const { keptMarkers, peer } = await ctx.services.autoSync.destroy(service);
    const there = !peer || !other ? '' : peer.removed ? ` Its copy on ${peer.host} was removed too.` : '';
    return { kind: 'message', text: `Destroyed auto-sync:${service}; ${keptMarkers} marker snapshot(s) kept.${there}${peer?.note ? ` ${peer.note}` : ''}`, data: { name: service, keptMarkers, peer } };
  },
};

const create: CommandSpec = {
  path: 'create auto-sync',
  help: 'create a replication service (a dialog, or all by options)',
  details: 'Without --from-fs and --to-fs on a terminal, a dialog asks for each value. Datasets are driver-qualified: fs:tank/data, zfs:pool/fs, btrfs:/mnt/pool/subvol.',
  options: [
    { name: '--from-host', help: 'source appliance (default localhost)', value: text('HOST') },
    { name: '--from-fs', help: 'source dataset', value: text('DATASET') },
    { name: '--to-host', help: 'destination appliance (default localhost)', value: text('HOST') },
    { name: '--to-fs', help: 'destination dataset', value: text('DATASET') },
    { name: '--type', help: 'schedule unit', value: scheduleType },
    { name: '--period', help: 'run every N units', value: count('N', 1, 10_000) },
    { name: '--cron', help: 'a five-field cron expression, instead of --type and --period', value: text('EXPR') },
    { name: '--once-at', help: 'run once at this date-time (YYYY-MM-DDTHH:MM)', value: text('TIME') },
    { name: '--keep-src', help: "markers kept on the source: a count, or a grid such as 'all 1d, 24h 7d 4w 12m' (see 'help show auto-sync :NAME snapshots')", value: retention },
    { name: '--keep-dst', help: 'markers kept on the destination: a count or a grid', value: retention },
    { name: '--recursive', help: 'include child datasets', value: yesNo },
    { name: '--exclude', help: "a gitignore-style pattern left out of the snapshots, relative to the dataset (fs only; repeatable): '*.tmp', 'cache/', '/build/**'", value: text('PATTERN'), repeatable: true },
    { name: '--rate-limit', help: 'bytes per second a transfer may use, such as 20M; 0 for no limit', value: text('RATE') },
    {
      name: '--compress',
      help: 'how the bytes cross the wire to another appliance: none, gzip, zstd or lz4 (default: zstd to or from an appliance bound over SSH where zstd is installed; none on this one and to a local-bind peer)',
      value: text('CODEC', () => ['none', 'gzip', 'zstd', 'lz4']),
    },
    { name: '--reverse-capable', help: 'keep the service on both appliances for reverse-direction', value: yesNo },
    { name: '--max-delay', help: 'seconds without a sync before status is warn', value: count('SECONDS', 0) },
    { name: '--comment', help: 'free text', value: text('TEXT') },
  ],
  async run(ctx, input) {
    const o = input.options;
    const req: Partial<CreateRequest> = {
      fromHost: o['from-host'] as string | undefined,
      fromFs: o['from-fs'] as string | undefined,
      toHost: o['to-host'] as string | undefined,
      toFs: o['to-fs'] as string | undefined,
      type: o.type as CreateRequest['type'],
      period: o.period as number | undefined,
      cron: o.cron as string | undefined,
      onceAt: o['once-at'] as string | undefined,
      keepSrc: o['keep-src'] as number | string | undefined,
      keepDst: o['keep-dst'] as number | string | undefined,
      recursive: o.recursive as boolean | undefined,
      exclude: o.exclude as string[] | undefined,
      rateLimit: o['rate-limit'] as string | undefined,
      compress: o.compress as string | undefined,
      reverseCapable: o['reverse-capable'] as boolean | undefined,
      maxDelay: o['max-delay'] as number | undefined,
      comment: o.comment as string | undefined,
    };
    let full: CreateRequest;
    for (const name of [req.fromFs, req.toFs]) if (name) ctx.access.dataset(name);
    if (req.fromFs && req.toFs) {
      full = req as CreateRequest;
      const planned = await ctx.services.autoSync.plan(full);
      if (
        !ctx.yes &&
        ctx.interactive &&
        !(await ctx.dialogs.confirm(`Create auto-sync:${planned.name} (${endpointLabel(planned.source)} => ${endpointLabel(planned.destination)}, ${describeSchedule(planned.schedule)})?`, { default: true }))
      )
        return NOTHING_CHANGED;
    } else {
      if (!ctx.interactive) throw new Error("'create auto-sync' needs --from-fs and --to-fs when there is no terminal to ask on.");
      // the wizard's questions load only when it runs: a start does not pay for them
      const { runWizard } = await import('./auto-sync-wizard.js');
      const answered = await runWizard(ctx, req);
      if (!answered) return NOTHING_CHANGED;
      full = answered;
      for (const name of [full.fromFs, full.toFs]) ctx.access.dataset(name);
    }
    // both appliances must reach each other before anything is created (enableReverse checks it again)
    if (full.reverseCapable) await ctx.services.reverse.checkBothWays(peerHostOf(await ctx.services.autoSync.plan(full)));
    const notes: string[] = [];
    let config = await ctx.services.autoSync.create(full, (line) => notes.push(line));
    if (config.reverseCapable) config = await ctx.services.reverse.enable(config.name);
    return {
      kind: 'message',
      text: `Created auto-sync:${config.name}: ${endpointLabel(config.source)} => ${endpointLabel(config.destination)}, ${describeSchedule(config.schedule)}. Run it now with 'run auto-sync :${config.name}'.${notes.map((n) => `\n${n}`).join('')}`,
      data: config,
    };
  },
};

const status: CommandSpec = {
  path: 'show auto-sync :auto-sync status',
  help: 'up or warn (from max_delay), maintenance and failure reasons, and the transfer in flight',
  async run(ctx, input) {
    const r = ctx.services.autoSync.status(input.instance!);
    const fields: [string, string][] = [
      ['service', `auto-sync:${r.view.config.name}`],
      ['status', r.health],
      ['state', r.view.state],
      ['reason', r.message],
      ['lag', r.lagSeconds === null ? '-' : `${r.lagSeconds} sec`],
      ['max_delay', r.view.config.maxDelay ? `${r.view.config.maxDelay} sec` : 'off'],
    ];
    if (r.progress) {
      fields.push(['transfer', `${formatBytes(r.progress.bytes)} sent at ${formatBytes(r.progress.rate)}/s since ${formatTime(r.progress.startedAt)}`]);
    }
    return { kind: 'record', fields, data: { service: r.view.config.name, status: r.health, state: r.view.state, reason: r.message, lagSeconds: r.lagSeconds, maxDelay: r.view.config.maxDelay, progress: r.progress } };
  },
};

const history: CommandSpec = {
  path: 'show auto-sync :auto-sync history',
  help: 'the send and receive trail: every attempt, successful or not',
  options: [{ name: '-n', alias: '--lines', help: 'how many attempts (default 20)', value: count('N', 1, 100_000) }],
  async run(ctx, input) {
    return historyTable(ctx.services.autoSync.histories(input.instance!, (input.options.n as number | undefined) ?? 20));
  },
};

const reverse: CommandSpec = {
  path: 'setup auto-sync :auto-sync reverse-direction',
  help: 'change direction: hand the master role to the other appliance, or take it over when it is down (asks first)',
  details:
    'With the other appliance up (asks first): the source is unmounted, the last delta synced, source and destination swap and the master role moves to the other appliance. On the destination with the source appliance down (disaster recovery, after a warning): this copy becomes the source; the old one keeps its unreplicated changes as an orphan when it comes back. From the source with the other appliance down: refused. Without the capability, asks to enable it.',
  async run(ctx, input) {
    const name = input.instance!;
    const c = ctx.services.autoSync.config(name);
    if (!c.reverseCapable) {
      ctx.progress('Reverse-direction feature is currently disabled');
      if (!(await confirmed(ctx, "Do you want enable 'reverse-direction' feature?", 'The service configuration is copied to the other appliance, where it is non-master; this one stays master.'))) return NOTHING_CHANGED;
      const next = await ctx.services.reverse.enable(name);
      return {
        kind: 'message',
        text: `Reverse-direction feature is now enabled for auto-sync:${name}: its configuration is kept on ${peerHostOf(next)} too (non-master there). Run 'setup auto-sync :${name} reverse-direction' to change direction.`,
        data: next,
      };
    }
    const result = await ctx.services.reverse.direction(name, async (question, help, warning) => {
      if (warning) ctx.progress(warning);
      return confirmed(ctx, question, help);
    });
    if (!result) return NOTHING_CHANGED;
    return { kind: 'message', text: result.message, data: result };
  },
};

const winnerValue = {
  name: 'here|peer',
  values: () => ['here', 'peer'],
  parse: (raw: string, label: string) => {
    if (raw !== 'here' && raw !== 'peer') throw new Error(`The value of ${label} must be here (this appliance's copy) or peer (the other appliance's), not "${raw}".`);
    return raw;
  },
};

const resolve: CommandSpec = {
  path: 'setup auto-sync :auto-sync resolve-split-brain',
  help: 'after split brain, keep one copy: it becomes the source, the other is rolled back with its changes kept as an orphan (asks first)',
  details:
    'Split brain: both appliances wrote as master at the same epoch, and the service went to maintenance on both. The kept copy becomes the source at the next epoch; what the other wrote since the last common snapshot is kept as a held orphan snapshot there, then it is rolled back and receives. Both appliances must be up.',
  options: [{ name: '--winner', help: 'the copy to keep: here or peer (asked when not given)', value: winnerValue }],
  async run(ctx, input) {
    const name = input.instance!;
    const config = ctx.services.autoSync.config(name);
    // before any question: there must be something to resolve
    ctx.services.reverse.checkSplitBrain(config);
    const host = peerHostOf(config);
    const here = ctx.services.appliance.id;
    let winner = input.options.winner as Winner | undefined;
    if (!winner) {
      if (!ctx.interactive) throw new NoTerminalError(`Which copy of auto-sync:${name} to keep? (--winner here|peer)`);
      winner = (await ctx.dialogs.select(
        'Copy to keep',
        [
          { value: 'here', label: `here (${here})` },
          { value: 'peer', label: `peer (${host})` },
        ],
        { help: `Both copies of auto-sync:${name} changed since the last common snapshot. The kept copy becomes the source; the other keeps what it wrote as an orphan snapshot, then is rolled back and receives from the kept one.` },
      )) as Winner;
    }
    const keep = winner === 'here' ? `here (${here})` : `on ${host}`;
    const lose = winner === 'here' ? host : `here (${here})`;
    if (
      !(await confirmed(
        ctx,
        `Keep the copy ${keep} and roll back the one ${winner === 'here' ? `on ${lose}` : lose}?`,
        'The changes of the rolled back copy are kept as an orphan snapshot, listed by show auto-sync :NAME orphans, until destroyed by hand.',
      ))
    )
      return NOTHING_CHANGED;
    const result = await ctx.services.reverse.resolveSplitBrain(name, winner);
    return { kind: 'message', text: result.message, data: result.config };
  },
};

const showOrphans: CommandSpec = {
  path: 'show auto-sync :auto-sync orphans',
  help: "changes kept when this appliance's copy was rolled back (after a disaster recovery or a split brain), each a dataset of its own",
  async run(ctx, input) {
    const name = input.instance!;
    const list = await ctx.services.reverse.orphans(name);
    // the same driver as the copy: shown as the operator names datasets
    const driver = localEndpoint(ctx.services.autoSync.config(name)).dataset.split(':')[0];
    return {
      kind: 'table',
      columns: [
        { key: 'snapshot', header: 'SNAPSHOT', flexible: true },
        { key: 'dataset', header: 'DATASET' },
        { key: 'createdAt', header: 'KEPT AT' },
        { key: 'held', header: 'HELD' },
      ],
      rows: list.map((o) => ({ snapshot: o.snapshot, dataset: `${driver}:${o.dataset}`, createdAt: formatTime(o.createdAt), held: o.held ? 'yes' : 'no' })),
      data: list,
      empty: `No orphans of auto-sync:${name} on this appliance.`,
    };
  },
};

const destroyOrphan: CommandSpec = {
  path: 'destroy auto-sync :auto-sync orphan <SNAPSHOT>',
  help: 'destroy one kept orphan snapshot (asks first)',
  args: { SNAPSHOT: { name: 'SNAPSHOT', help: "the orphan's snapshot name, as 'show auto-sync :NAME orphans' lists it" } },
  async run(ctx, input) {
    const name = input.instance!;
    const snapshot = input.args.SNAPSHOT as string;
    const known = (await ctx.services.reverse.orphans(name)).find((o) => o.snapshot === snapshot);
    if (!known) throw new Error(`No orphan ${snapshot} of auto-sync:${name} here: see 'show auto-sync :${name} orphans'.`);
    if (
      !(await confirmed(ctx, `Destroy orphan ${known.dataset}@${snapshot}? The changes it keeps are lost for good.`, 'An orphan holds what this appliance wrote after the last replication before it was rolled back; nothing else has them.'))
    )
      return NOTHING_CHANGED;
    await ctx.services.reverse.removeOrphan(name, snapshot);
    return { kind: 'message', text: `Destroyed orphan ${known.dataset}@${snapshot}.`, data: known };
  },
};

function retentionRows(service: string, plans: { source: SidePlan; destination: SidePlan }): Record<string, string>[] {
  const rows: Record<string, string>[] = [];
  for (const [which, p] of [
    ['source', plans.source],
    ['destination', plans.destination],
  ] as const) {
    const side = `${which} (${p.keep})`;
    for (const m of p.plan) rows.push({ side, snapshot: m.name, created: formatTime(m.createdAt.toISOString()), verdict: m.keep ? `keep: ${m.rules.join(', ')}` : 'prune' });
    for (const o of p.others) rows.push({ side, snapshot: o, created: '-', verdict: isOrphanOf(service, o) ? 'keep: orphan (destroyed only by hand)' : 'keep: not a marker of this service' });
  }
  return rows;
}

const retentionColumns = [
  { key: 'side', header: 'SIDE (KEEP)' },
  { key: 'snapshot', header: 'SNAPSHOT', flexible: true },
  { key: 'created', header: 'CREATED', drop: 1 },
  { key: 'verdict', header: 'NEXT PRUNE', flexible: true },
];

const showSnapshots: CommandSpec = {
  path: 'show auto-sync :auto-sync snapshots',
  help: "each side's snapshots: the retention rule that keeps each marker, or prune",
  details: `keep_src and keep_dst are ${RETENTION_HELP}. The last common marker and held markers always stay; snapshots that are not this service's markers are never pruned. The next run prunes what says prune here.`,
  async run(ctx, input) {
    const plans = await ctx.services.autoSync.retention(input.instance!);
    return { kind: 'table', columns: retentionColumns, rows: retentionRows(input.instance!, plans), data: plans, empty: `auto-sync:${input.instance!} has no snapshots yet.` };
  },
};

const runPrune: CommandSpec = {
  path: 'run auto-sync :auto-sync prune',
  help: 'thin the markers of both sides now, as keep_src and keep_dst say',
  options: [{ name: '--dry-run', help: 'only list what would be pruned and which rule keeps the rest' }],
  async run(ctx, input) {
    const name = input.instance!;
    if (input.options['dry-run']) {
      const plans = await ctx.services.autoSync.retention(name);
      return { kind: 'table', columns: retentionColumns, rows: retentionRows(input.instance!, plans), data: plans, empty: `auto-sync:${name} has no snapshots yet.` };
    }
    const result = await ctx.services.autoSync.prune(name);
    return { kind: 'message', text: result.pruned.length ? `auto-sync:${name}: pruned ${result.pruned.join(', ')}.` : `auto-sync:${name}: nothing to prune.`, data: result };
  },
};

/** `:NAME` of an auto-sync service: this appliance's, and those received from others (they have read-only views: show, history, status) */
const autoSyncInstances: InstanceKind = {
  kind: 'auto-sync',
  help: 'an auto-sync service instance',
  list: (ctx) =>
    [...ctx.services.autoSync.list(), ...ctx.services.autoSync.received()].map((v) => ({
      name: v.config.name,
      description: `${endpointLabel(v.config.source)} => ${endpointLabel(v.config.destination)} (${v.receivedFrom ? `received from ${v.receivedFrom}` : v.state})`,
    })),
};

export const autoSyncFamily: CommandFamily = {
  words,
  instances: [autoSyncInstances],
  commands: [status, history, resync, dashboard, showAll, showOne, showProperty, setupProperty, logtail, logAll, setupRun, runCmd, enable, disable, destroy, create, reverse, resolve, showOrphans, destroyOrphan, showSnapshots, runPrune],
};
