/**
 * syncsh's entry: the interactive shell, `-c COMMAND`, commands on stdin, or
 * the demo appliance. The modes only assemble parts; the work is elsewhere.
 */
import { parseArgs } from 'node:util';

const USAGE = `usage: syncsh                 interactive shell (commands on stdin when it is not a terminal)
       syncsh -c "COMMAND"    run one command and exit (0 on success)
       syncsh demo            the shell on a demo appliance with a live replication
       syncsh daemon [--metrics ADDR:PORT] [--stall-timeout SECONDS] [--retry-delay SECONDS]
                              run every enabled service on its schedule
       syncsh agent [send|receive] [--home DIR]
                              the peer agent another appliance talks to (over SSH or as a child process)
       syncsh serve [--listen ADDR:PORT] [--authorized-keys FILE] [--password-auth yes|no]
                              the operator console over SSH (default 127.0.0.1:2222,
                              keys from <home>/authorized_keys; passwords only when
                              --password-auth yes or 'setup console password-auth yes')
options: --json (print results as JSON), -y (answer yes), --help`;

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'agent') {
    // its own arguments (--home, --peer) and a stdout that carries only the protocol
    const { runAgent } = await import('./agent.js');
    return runAgent(argv.slice(1), process.env);
  }
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
        listen: { type: 'string' },
        'authorized-keys': { type: 'string' },
        'password-auth': { type: 'string' },
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
  if (mode === 'serve') {
    const { startServe } = await import('./console/serve.js');
    return startServe({ listen: values.listen, authorizedKeys: values['authorized-keys'], passwordAuth: values['password-auth'] }, process.env);
  }
  if (mode) {
    process.stderr.write(`syncsh: unknown mode "${mode}".\n${USAGE}\n`);
    return 2;
  }
  // Each mode loads only what it needs: the agent and `-c` start fast.
  const { openServices } = await import('./services/index.js');
  const { processTerminal } = await import('./shell/terminal.js');
  const { createDialogs } = await import('./shell/dialogs.js');
  const { ShellSession } = await import('./shell/session.js');
  const services = openServices(process.env);
  if (values.version) {
    const { VERSION } = await import('./services/appliance.js');
    process.stdout.write(`syncsh ${VERSION}\n`);
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
  // The line editor (ink, react) loads only for a person at a terminal: `-c` and scripts start faster.
  if (!term.interactive) return (await import('./shell/script.js')).runScript(session);
  try {
    // a person types command after command: connections to peers stay warm between them
    services.peers.keepWarm();
  } catch {
    /* a damaged configuration: each command says so */
  }
  return (await import('./shell/repl.js')).runRepl(session, services.home.historyFile);
}
