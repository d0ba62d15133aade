/** This appliance: identity and appliance-wide settings. */
import type { CommandFamily } from './grammar/types.js';
import { nbdSettings, setAlertCommand, setApplianceId, setNbdAllow, setNbdListen, validApplianceId } from '../services/appliance.js';
import { nbdSocketPath } from '../services/nbd/paths.js';

export const applianceFamily: CommandFamily = {
  words: {
    appliance: 'this appliance: id, hostname, version and settings',
    id: "this appliance's id, as the prompt and its peers show it",
    'alert-command': 'the command run with every alert (service, level, message as arguments; JSON on stdin)',
    'nbd-listen': 'the TCP address the NBD server also listens on (the unix socket is always served)',
    'nbd-allow': 'the address ranges NBD clients may connect from over TCP',
  },
  commands: [
    {
      path: 'show appliance',
      help: "this appliance's id, hostname, version and settings",
      async run(ctx) {
        const a = ctx.services.appliance;
        const publicKey = ctx.services.peers.publicKey(); // made once, in the home
        const nbd = nbdSettings(ctx.services.home); // fresh: a setup in this session shows at once
        const nbdSocket = nbdSocketPath(ctx.services.home);
        return {
          kind: 'record',
          fields: [
            ['id', a.id],
            ['hostname', a.hostname],
            ['version', a.version],
            ['home', ctx.services.home.root],
            ['default_driver', a.defaultDriver],
            ['alert_command', a.alertCommand ? a.alertCommand.join(' ') : '-'],
            ['nbd_socket', nbdSocket],
            ['nbd_listen', nbd.nbdListen ? formatListen(nbd.nbdListen) : 'none'],
            ['nbd_allow', nbd.nbdAllow.join(' ')],
            ['ssh_public_key', publicKey],
          ],
          data: { ...a, ...nbd, nbdSocket, home: ctx.services.home.root, sshPublicKey: publicKey },
        };
      },
    },
    {
      path: 'setup appliance alert-command [<COMMAND>]',
      help: 'set the alert command (an absolute path and its arguments); nothing clears it',
      details:
        'The daemon runs it, as root, with every alert. Over the SSH console the program must lie under a directory the administrator allowed ("programs" in /etc/syncsh/console-policy.json; /etc/syncsh/alert.d by default); the local shell may name any.',
      args: { COMMAND: { name: 'COMMAND', help: 'the program and its first arguments', rest: true } },
      async run(ctx, input) {
        const argv = (input.args.COMMAND as string[] | undefined) ?? [];
        const set = setAlertCommand(ctx.services.home, argv, ctx.access, ctx.services.appliance);
        return { kind: 'message', text: set ? `Alerts will run: ${set.join(' ')}` : 'No alert command: alerts go to the service logs only.', data: { alertCommand: set } };
      },
    },
    {
      path: 'setup appliance id <ID>',
      help: "change this appliance's id (refused once it is bound to another appliance)",
      details:
        'Two homes on one machine both start with the host name as their id, and cannot be bound to each other until one has its own. Its peers know an appliance by its id, so the id cannot change while it is bound to any: unbind first.',
      args: {
        ID: {
          name: 'ID',
          help: '1 to 63 letters, digits, "_", "." or "-", starting with a letter or a digit',
          parse: (raw) => {
            if (!validApplianceId(raw)) throw new Error(`"${raw}" is not a valid appliance id: 1 to 63 letters, digits, "_", "." or "-", starting with a letter or a digit.`);
            return raw;
          },
        },
      },
      async run(ctx, input) {
        const { appliance, home, peers } = ctx.services;
        const was = appliance.id;
        const bound = [...new Set([...peers.store.outbound(), ...peers.store.inbound()].map((p) => p.id))];
        const id = setApplianceId(home, appliance, input.args.ID as string, bound);
        return { kind: 'message', text: id === was ? `The appliance id is ${id} already.` : `The appliance id is now ${id} (was ${was}).`, data: { id, was } };
      },
    },
    {
      path: 'setup appliance nbd-listen <ADDRESS>',
      help: 'also serve NBD on TCP at ADDRESS:PORT (none: the unix socket only); the daemon picks it up',
      args: { ADDRESS: { name: 'ADDRESS:PORT', help: 'an IP address and port, e.g. 0.0.0.0:10809, or none', values: () => ['none'] } },
      async run(ctx, input) {
        ctx.access.localOnly('nbd-listen');
        const set = setNbdListen(ctx.services.home, input.args.ADDRESS as string);
        return {
          kind: 'message',
          text: set ? `NBD clients may connect on ${formatListen(set)} from ${nbdSettings(ctx.services.home).nbdAllow.join(', ')}.` : 'NBD is served on the unix socket only.',
          data: { nbdListen: set },
        };
      },
    },
    {
      path: 'setup appliance nbd-allow <CIDR>',
      help: 'the address ranges NBD clients may connect from over TCP (others are closed before the handshake)',
      args: { CIDR: { name: 'CIDR', help: 'one or more ranges, e.g. 192.168.1.0/24 10.0.0.7/32', rest: true } },
      async run(ctx, input) {
        ctx.access.localOnly('nbd-allow');
        const set = setNbdAllow(ctx.services.home, input.args.CIDR as string[]);
        return { kind: 'message', text: `NBD clients over TCP are allowed from ${set.join(', ')}.`, data: { nbdAllow: set } };
      },
    },
  ],
};

function formatListen(hp: { host: string; port: number }): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
