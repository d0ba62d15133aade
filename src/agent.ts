/**
 * `syncsh agent`: the agent (services/peer/agent.ts) as a process, started
 * by another appliance over SSH (the forced command of its key:
 * SSH_ORIGINAL_COMMAND names the sub-command) or as a child process.
 *
 *   syncsh agent [--home DIR] [--peer ID]            the control session
 *   syncsh agent send [--home DIR] [--peer ID]       a send stream on stdout
 *   syncsh agent receive [--home DIR] [--peer ID]    a receive stream on stdin
 *
 * --peer is set by the authorized_keys line: whose key this session came in
 * with. stdout carries nothing but the protocol.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createServices } from './services/index.js';
import { homeKind } from './services/home.js';
import { Agent, refusalLine } from './services/peer/agent.js';
import { splitCommand } from './services/peer/protocol.js';

export async function runAgent(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  // Nothing but the protocol on stdout: stray console output goes to stderr.
  console.log = console.error;
  console.info = console.error;
  console.warn = console.error;
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { home: { type: 'string' }, peer: { type: 'string' } } });
  } catch (error) {
    process.stderr.write(`syncsh agent: ${(error as Error).message}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  // The other appliance went away: nothing is left to tell it (a send reports this itself).
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') process.stderr.write(`syncsh agent: ${error.message}\n`);
    process.exitCode = 1;
  });
  let sub = positionals[0] ?? 'control';
  // A forced command: what the peer asked to run names the sub-command.
  if (env.SSH_ORIGINAL_COMMAND !== undefined) {
    const words = splitCommand(env.SSH_ORIGINAL_COMMAND);
    const at = words.indexOf('agent');
    if (at < 0) {
      process.stdout.write(refusalLine('bad-request', `This key only runs the syncsh agent, not "${env.SSH_ORIGINAL_COMMAND.slice(0, 100)}".`));
      return 2;
    }
    sub = ['send', 'receive', 'mirror'].includes(words[at + 1]) ? words[at + 1] : 'control';
  }
  if (!['control', 'send', 'receive', 'mirror'].includes(sub)) {
    process.stderr.write(`syncsh agent: unknown sub-command "${sub}" (control, send, receive or mirror).\n`);
    return 2;
  }
  const agentEnv = { ...env };
  if (values.home) agentEnv.SYNCSH_HOME = path.resolve(values.home);
  delete agentEnv.SYNCSH_APPLIANCE_ID;
  // A directory that holds something else is never made a home: nothing is written there.
  const root = path.resolve(agentEnv.SYNCSH_HOME || '/var/lib/syncsh');
  const found = homeKind(root);
  if (found.kind === 'other') {
    process.stdout.write(refusalLine('bad-request', `${root} is not an appliance home: ${found.why}. Nothing was written there.`));
    return 2;
  }
  const services = createServices(agentEnv);
  const agent = new Agent(services, values.peer ?? null, (env.SSH_CLIENT ?? '').split(' ')[0] || 'local');
  const io = { input: process.stdin, output: process.stdout, report: process.stderr };
  if (sub === 'control') return agent.control(io);
  if (sub === 'mirror') return agent.mirror(io);
  return agent.data(sub as 'send' | 'receive', io);
}
