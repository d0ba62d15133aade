/** This appliance: identity and appliance-wide settings. */
import type { CommandFamily } from './grammar/types.js';
import { nbdSettings, setAlertCommand, setNbdAllow, setNbdListen } from '../services/appliance.js';
import { nbdSocketPath } from '../services/nbd/service.js';

export const applianceFamily: CommandFamily = {
  words: {
    appliance: 'this appliance: id, hostname, version and settings',
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
      args: { COMMAND: { name: 'COMMAND', help: 'the program and its first arguments', rest: true } },
      async run(ctx, input) {
        const argv = (input.args.COMMAND as string[] | undefined) ?? [];
        const set = setAlertCommand(ctx.services.home, argv);
        return { kind: 'message', text: set ? `Alerts will run: ${set.join(' ')}` : 'No alert command: alerts go to the service logs only.', data: { alertCommand: set } };
      },
    },
    {
      path: 'setup appliance nbd-listen <ADDRESS>',
      help: 'also serve NBD on TCP at ADDRESS:PORT (none: the unix socket only); the daemon picks it up',
      args: { ADDRESS: { name: 'ADDRESS:PORT', help: 'an IP address and port, e.g. 0.0.0.0:10809, or none', values: () => ['none'] } },
      async run(ctx, input) {
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
        const set = setNbdAllow(ctx.services.home, input.args.CIDR as string[]);
        return { kind: 'message', text: `NBD clients over TCP are allowed from ${set.join(', ')}.`, data: { nbdAllow: set } };
      },
    },
  ],
};

function formatListen(hp: { host: string; port: number }): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
