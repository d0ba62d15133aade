/** The network family: binding this appliance to others over SSH, and what it is bound to. */
import type { CommandContext, CommandFamily, CommandSpec } from './grammar/types.js';
import { count, formatTime, text } from './values.js';
import { confirmed, NOTHING_CHANGED } from './ask.js';
import { NoTerminalError } from './dialogs.js';
import type { BindQuestions, BindResult } from '../services/peer/index.js';
import { describePolicy, MAX_FENCE_TIMEOUT_MS, showCommand, type FencePolicy } from '../services/fencing.js';

const words = {
  network: 'how this appliance reaches other appliances',
  'ssh-bind': "pair with another appliance over SSH: trust its host key, install this appliance's key there",
  'ssh-unbind': 'undo a pairing on both sides',
  'ssh-bindings': 'the bound appliances and whether each can be reached now',
  'local-bind': 'pair with another appliance on this machine (its home), reached as a child process',
  'authorized-keys': "the authorized_keys file this appliance installs peers' keys in",
  fencing: "what a mirror does with a write when a peer stops answering (003's qmirrorcheck)",
  fence: 'cut the lost peer off with a command; the write goes on only if it exits 0',
  ignore: 'carry on writing without the lost peer (a slave becomes master)',
  manual: "wait for the operator: a slave's writes fail until it is switched to master or the peer is back",
  clear: 'no policy: a write that finds its peer lost fails',
};

const hostArg = (help: string) => ({
  ...text('HOST', (ctx) => {
    const services = (ctx as Partial<CommandContext>).services;
    return services ? services.peers.store.outbound().map((p) => p.id) : [];
  }),
  help,
});

/** the dialogs binding needs: trust the host key (-y answers yes), and the password (never echoed) */
function questions(ctx: CommandContext): BindQuestions {
  return {
    async trustHostKey(seen) {
      const where = `${seen.host}${seen.port === 22 ? '' : `:${seen.port}`}`;
      if (seen.previous) ctx.progress(`WARNING: the host key of ${where} has CHANGED since it was bound: it was ${seen.previous}, it is now ${seen.type} ${seen.fingerprint}.`);
      else ctx.progress(`The appliance at ${where} presents the host key ${seen.type} ${seen.fingerprint}.`);
      const question = seen.previous ? `Trust the new host key of ${where} and bind again?` : `Trust this host key and bind ${where}?`;
      if (ctx.yes) return true;
      if (!ctx.interactive) throw new NoTerminalError(question);
      return ctx.dialogs.confirm(question, { default: false, help: 'Compare the fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on that host.' });
    },
    async password(prompt) {
      if (!ctx.interactive) return null;
      return ctx.dialogs.password(`${prompt}:`, { help: "Used once to install this appliance's key there; never stored." });
    },
  };
}

function bound(result: BindResult): string {
  const p = result.peer;
  const where = p.transport === 'ssh' ? `${p.user}@${p.address}:${p.port}` : `${p.agent.home} (child process)`;
  const how = result.via === 'password' ? ', logged in once with the password' : result.via === 'key' ? ", logged in with this appliance's key" : '';
  const key = result.authorizedKeys ? `; this appliance's key is installed in ${result.authorizedKeys} there, restricted to the syncsh agent` : '';
  return `${result.rebound ? 'Bound again' : 'Bound'} to the appliance ${p.id} at ${where}${how}${key}. Use it with --to-host ${p.id} or --from-host ${p.id}.`;
}

const sshBind: CommandSpec = {
  path: 'setup network ssh-bind <HOST>',
  help: 'pair with the appliance at HOST over SSH (asks to trust its host key; the password is asked once if its key is not accepted)',
  details:
    "Shows the host key fingerprint and asks to trust it (-y answers yes), logs in with this appliance's key or else the password (asked, never echoed nor stored; --password-file for scripts), installs this appliance's public key there restricted to the syncsh agent, and records the pairing on both appliances.",
  args: { HOST: { ...text('HOST'), help: 'host name or address of the other appliance' } },
  options: [
    { name: '--port', help: 'its SSH port (default 22)', value: count('PORT', 1, 65535) },
    { name: '--user', help: 'the user to log in as there (default: this user)', value: text('USER') },
    { name: '--password-file', help: 'read the password from FILE instead of asking (scripts; over the console, FILE under the allowed directories)', value: text('FILE') },
    { name: '--remote-home', help: 'the syncsh home of the other appliance (default: its default)', value: text('DIR') },
    { name: '--remote-syncsh', help: 'bin/syncsh.js of the other appliance (default: the same path as here)', value: text('PATH') },
  ],
  async run(ctx, input) {
    const o = input.options;
    const result = await ctx.services.peers.bind(
      {
        host: input.args.HOST as string,
        port: o.port as number | undefined,
        user: o.user as string | undefined,
        passwordFile: o['password-file'] === undefined ? undefined : ctx.access.readFile(o['password-file'] as string),
        remoteHome: o['remote-home'] as string | undefined,
        remoteSyncsh: o['remote-syncsh'] as string | undefined,
      },
      questions(ctx),
    );
    return { kind: 'message', text: bound(result), data: { ...result.peer, via: result.via, authorizedKeys: result.authorizedKeys, rebound: result.rebound } };
  },
};

const localBind: CommandSpec = {
  path: 'setup network local-bind <HOME>',
  help: 'pair with the appliance whose home is HOME on this machine (its agent runs as a child process)',
  details: 'HOME must already be an appliance home (its appliance.json names the appliance), or an empty or missing directory with --create, which makes a new appliance there. Nothing is written anywhere else.',
  args: { HOME: { ...text('HOME'), help: "the other appliance's SYNCSH_HOME" } },
  options: [{ name: '--create', help: 'make a new appliance in HOME, which must be empty or missing' }],
  async run(ctx, input) {
    const result = await ctx.services.peers.bindLocal(input.args.HOME as string, { create: Boolean(input.options.create), access: ctx.access });
    return { kind: 'message', text: bound(result), data: { ...result.peer, via: result.via, rebound: result.rebound } };
  },
};

const sshUnbind: CommandSpec = {
  path: 'setup network ssh-unbind <HOST>',
  help: 'undo a pairing: the other appliance forgets this one and removes its key, then it is forgotten here',
  args: { HOST: hostArg('the appliance id or address') },
  options: [{ name: '--force', help: 'forget it here even when it cannot be reached (its side stays)' }],
  async run(ctx, input) {
    const host = input.args.HOST as string;
    const outbound = ctx.services.peers.store.find(host);
    const inbound = outbound ? null : ctx.services.peers.store.inboundPeer(host);
    if (!outbound && !inbound) throw new Error(`No appliance "${host}" is bound to this one, in either direction.`);
    const id = outbound?.id ?? inbound!.id;
    const using = ctx.services.autoSync.list().filter((v) => [v.config.source.host, v.config.destination.host].some((h) => h === host || h === id || (outbound && h === outbound.address)));
    const warn = using.length ? ` auto-sync:${using.map((v) => v.config.name).join(', auto-sync:')} use${using.length === 1 ? 's' : ''} it and will fail until it is bound again.` : '';
    if (!(await confirmed(ctx, `Unbind the appliance ${id}?`, `Both appliances forget the pairing and ${outbound ? "this appliance's key is removed there" : `${id}'s key is removed here`}.${warn}`))) return NOTHING_CHANGED;
    const r = await ctx.services.peers.unbind(host, { force: Boolean(input.options.force) });
    const textOut =
      r.direction === 'outbound'
        ? r.peerForgot
          ? `Unbound ${r.id}: it forgot this appliance and removed its key; forgotten here too.`
          : `Forgot ${r.id} here only: it could not be reached (${r.reason}); its record of this appliance and the key line stay there.`
        : `Unbound ${r.id}: its key line was removed from this appliance's authorized_keys and it is forgotten here.`;
    return { kind: 'message', text: textOut, data: r };
  },
};

const showBindings: CommandSpec = {
  path: 'show network ssh-bindings',
  help: 'the bound appliances, each direction, and whether each can be reached now',
  async run(ctx) {
    const views = await ctx.services.peers.bindings();
    return {
      kind: 'table',
      columns: [
        { key: 'id', header: 'APPLIANCE' },
        { key: 'direction', header: 'DIRECTION' },
        { key: 'address', header: 'ADDRESS', flexible: true },
        { key: 'fingerprint', header: 'KEY FINGERPRINT', flexible: true, drop: 2 },
        { key: 'boundAt', header: 'BOUND', drop: 1 },
        { key: 'reachable', header: 'REACHABLE', flexible: true },
      ],
      rows: views.map((v) => ({
        id: v.id,
        direction: v.direction === 'outbound' ? 'to it' : 'from it',
        address: v.transport === 'local' ? (v.direction === 'outbound' ? 'local (child process)' : 'local') : v.direction === 'outbound' ? `${v.user}@${v.address}:${v.port}` : v.address,
        fingerprint: v.fingerprint ?? '-',
        boundAt: formatTime(v.boundAt),
        reachable: v.reachable === null ? '-' : v.reachable ? 'yes' : `no: ${v.reason}`,
      })),
      data: views,
      empty: "No appliance is bound to this one. Bind one with 'setup network ssh-bind HOST'.",
    };
  },
};

const showNetwork: CommandSpec = {
  path: 'show network',
  help: "this appliance's SSH key and network settings",
  async run(ctx) {
    const peers = ctx.services.peers;
    const data = {
      publicKey: peers.publicKey(),
      authorizedKeys: peers.store.authorizedKeysFile(),
      agent: peers.ownAgent(),
      outbound: peers.store.outbound().length,
      inbound: peers.store.inbound().length,
    };
    return {
      kind: 'record',
      fields: [
        ['ssh_public_key', data.publicKey],
        ['authorized_keys', data.authorizedKeys],
        ['agent_command', `${data.agent.node} ${data.agent.script} agent --home ${data.agent.home}`],
        ['bound_to', String(data.outbound)],
        ['bound_from', String(data.inbound)],
      ],
      data,
    };
  },
};

const setupAuthorizedKeys: CommandSpec = {
  path: 'setup network authorized-keys [<FILE>]',
  help: "where peers' keys are installed on this appliance (sshd's AuthorizedKeysFile); nothing restores ~/.ssh/authorized_keys",
  details:
    'The agent appends a key line to this file, as root, for every appliance that binds to this one. Over the SSH console the file must lie under a directory the administrator allowed ("write" in /etc/syncsh/console-policy.json; the home\'s files/ and images/ by default).',
  args: { FILE: { ...text('FILE'), help: 'an absolute path' } },
  async run(ctx, input) {
    const file = (input.args.FILE as string | undefined) ?? null;
    await ctx.services.peers.store.setAuthorizedKeysFile(file, ctx.access);
    const now = ctx.services.peers.store.authorizedKeysFile();
    return { kind: 'message', text: `Peers' keys will be installed in ${now}.`, data: { authorizedKeys: now } };
  },
};

/** any peer bound either way, for TAB */
const fencePeerArg = {
  ...text('PEER', (ctx) => {
    const services = (ctx as Partial<CommandContext>).services;
    return services ? services.fencing.list().map((r) => r.peer) : [];
  }),
  help: 'the appliance id (or address) of a bound peer',
};

const setFencingMessage = (p: FencePolicy & { peer: string }): string => {
  const what = {
    fence: 'a mirror that loses it runs the command; a write goes on only if the command exits 0',
    ignore: 'a mirror that loses it carries on writing (a slave becomes master): make sure a lost peer cannot write too, or a split brain follows',
    manual: 'a slave that loses it fails writes until it is switched to master or the peer is back; a master carries on',
  }[p.kind];
  return `Fencing policy of ${p.peer}: ${describePolicy(p)}; ${what}.`;
};

const setFence: CommandSpec = {
  path: 'setup network fencing <PEER> fence',
  help: 'fence PEER with a command when a mirror loses it (qmirrorcheck -t fence): its exit status decides',
  details:
    'The command line is split into a program and its arguments as a shell would read quotes, and run without a shell; it gets SYNCSH_FENCE_PEER and SYNCSH_FENCE_ADDRESS in its environment. The program must be an absolute path to an executable; over the SSH console it must lie under a directory the administrator allowed ("programs" in /etc/syncsh/console-policy.json; /etc/syncsh/alert.d by default). It is stopped, with everything it started, after --timeout seconds, and then counts as failed.',
  args: { PEER: fencePeerArg },
  options: [
    { name: '--command', help: "the fence command, quoted: --command '/etc/syncsh/alert.d/fence-ipmi --host bmc-b'", value: text('CMD') },
    { name: '--timeout', help: `seconds it may take (default 30; at most ${MAX_FENCE_TIMEOUT_MS / 1000})`, value: count('SECONDS', 1, MAX_FENCE_TIMEOUT_MS / 1000) },
  ],
  async run(ctx, input) {
    const line = input.options.command as string | undefined;
    if (line === undefined) throw new Error("setup network fencing PEER fence needs --command 'PROGRAM ARGS…' (an absolute path). Nothing was changed.");
    const seconds = input.options.timeout as number | undefined;
    const set = await ctx.services.fencing.setFence(input.args.PEER as string, line, { timeoutMs: seconds === undefined ? undefined : seconds * 1000, access: ctx.access });
    return { kind: 'message', text: setFencingMessage(set), data: set };
  },
};

const simpleFencing = (kind: 'ignore' | 'manual', help: string): CommandSpec => ({
  path: `setup network fencing <PEER> ${kind}`,
  help,
  args: { PEER: fencePeerArg },
  async run(ctx, input) {
    const set = await ctx.services.fencing.setSimple(input.args.PEER as string, kind);
    return { kind: 'message', text: setFencingMessage(set), data: set };
  },
});

const clearFencing: CommandSpec = {
  path: 'setup network fencing <PEER> clear',
  help: 'remove the fencing policy of PEER: a write to a mirror that loses it fails',
  args: { PEER: fencePeerArg },
  async run(ctx, input) {
    const r = await ctx.services.fencing.clear(input.args.PEER as string);
    return { kind: 'message', text: r.was ? `Fencing policy of ${r.peer} cleared (was ${describePolicy(r.was)}): a write to a mirror that loses it now fails.` : `${r.peer} had no fencing policy; nothing was changed.`, data: r };
  },
};

const showFencing: CommandSpec = {
  path: 'show network fencing',
  help: 'the fencing policy of every bound peer (none: a write that finds it lost fails)',
  async run(ctx) {
    const rows = ctx.services.fencing.list();
    return {
      kind: 'table',
      columns: [
        { key: 'peer', header: 'APPLIANCE' },
        { key: 'policy', header: 'POLICY' },
        { key: 'command', header: 'COMMAND', flexible: true },
        { key: 'timeout', header: 'TIMEOUT', drop: 1 },
        { key: 'setAt', header: 'SET', drop: 2 },
      ],
      rows: rows.map((r) => ({
        peer: r.bound === 'unbound' ? `${r.peer} (no longer bound)` : r.peer,
        policy: r.kind,
        command: r.command ? showCommand(r.command) : '-',
        timeout: r.timeoutMs === null ? '-' : `${r.timeoutMs / 1000} sec`,
        setAt: r.setAt ? formatTime(r.setAt) : '-',
      })),
      data: rows,
      empty: "No appliance is bound to this one, so there is no fencing policy. Bind one with 'setup network ssh-bind HOST'.",
    };
  },
};

const showFencingLog: CommandSpec = {
  path: 'show network fencing log',
  help: 'the fencing log: policies set and cleared, every fence command run with its output and outcome',
  options: [{ name: '-n', help: 'the last N lines (default 50)', value: count('N', 1, 100_000) }],
  async run(ctx, input) {
    const lines = await ctx.services.fencing.log.all();
    const n = (input.options.n as number | undefined) ?? 50;
    const tail = lines.slice(-n);
    return { kind: 'lines', lines: tail.length ? tail : ['The fencing log is empty.'], data: tail };
  },
};

export const networkFamily: CommandFamily = {
  words,
  commands: [
    showBindings,
    showNetwork,
    sshBind,
    localBind,
    sshUnbind,
    setupAuthorizedKeys,
    showFencing,
    showFencingLog,
    setFence,
    simpleFencing('ignore', 'carry on writing when a mirror loses PEER (qmirrorcheck -t ignore): a slave becomes master'),
    simpleFencing('manual', "when a mirror loses PEER, a slave's writes fail until it is switched to master or PEER is back (qmirrorcheck -t manual)"),
    clearFencing,
  ],
};
