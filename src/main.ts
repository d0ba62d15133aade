/**
 * syncsh's entry: the interactive shell, `-c COMMAND`, commands on stdin, or
 * the demo appliance. The modes only assemble parts; the work is elsewhere.
 */
import { parseArgs } from 'node:util';
import { createServices } from './services/index.js';
import { processTerminal } from './shell/terminal.js';
import { createDialogs } from './shell/dialogs.js';
import { ShellSession } from './shell/session.js';
import { runRepl } from './shell/repl.js';
import { runScript } from './shell/script.js';

const USAGE = `usage: syncsh                 interactive shell (commands on stdin when it is not a terminal)
       syncsh -c "COMMAND"    run one command and exit (0 on success)
       syncsh demo            the shell on a demo appliance with a live replication
       syncsh daemon [--metrics ADDR:PORT] [--stall-timeout SECONDS] [--retry-delay SECONDS]
                              run every enabled service on its schedule
options: --json (print results as JSON), -y (answer yes), --help`;

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        command: { type: 'string', short: 'c', multiple: true },
        json: { type: 'boolean' },
        yes: { type: 'boolean', short: 'y' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
        metrics: { type: 'string' },
        'stall-timeout': { type: 'string' },
        'retry-delay': { type: 'string' },
      },
    });
  } catch (error) {
    process.stderr.write(`syncsh: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const mode = positionals[0];
  if (mode === 'demo') {
    const { startDemo } = await import('./demo.js');
    return startDemo(process.env);
  }
  if (mode === 'daemon') {
    const { startDaemon } = await import('./daemon.js');
    return startDaemon({ metrics: values.metrics, stallTimeout: values['stall-timeout'], retryDelay: values['retry-delay'] }, process.env);
  }
  if (mode) {
    process.stderr.write(`syncsh: unknown mode "${mode}".\n${USAGE}\n`);
    return 2;
  }
  const services = createServices(process.env);
  if (values.version) {
    process.stdout.write(`syncsh ${services.appliance.version}\n`);
    return 0;
  }
  const term = processTerminal();
  const session = new ShellSession(services, term, createDialogs(term), { json: values.json, yes: values.yes });
  if (values.command) {
    let code = 0;
    for (const command of values.command) {
      const outcome = await session.execute(command);
      if (!outcome.ok) {
        code = outcome.code;
        break;
      }
    }
    return code;
  }
  if (!term.interactive) return runScript(session);
  return runRepl(session, services.home.historyFile);
}
