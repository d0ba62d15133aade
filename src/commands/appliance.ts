/** This appliance: identity and appliance-wide settings. */
import type { CommandFamily } from './grammar/types.js';
import { setAlertCommand } from '../services/appliance.js';

export const applianceFamily: CommandFamily = {
  words: {
    appliance: 'this appliance: id, hostname, version and settings',
    'alert-command': 'the command run with every alert (service, level, message as arguments; JSON on stdin)',
  },
  commands: [
    {
      path: 'show appliance',
      help: "this appliance's id, hostname, version and settings",
      async run(ctx) {
        const a = ctx.services.appliance;
        const publicKey = ctx.services.peers.publicKey(); // made once, in the home
        return {
          kind: 'record',
          fields: [
            ['id', a.id],
            ['hostname', a.hostname],
            ['version', a.version],
            ['home', ctx.services.home.root],
            ['default_driver', a.defaultDriver],
            ['alert_command', a.alertCommand ? a.alertCommand.join(' ') : '-'],
            ['ssh_public_key', publicKey],
          ],
          data: { ...a, home: ctx.services.home.root, sshPublicKey: publicKey },
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
  ],
};
