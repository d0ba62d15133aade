/** The agent's protocol handler in-process, over a pair of PassThrough streams: no child process, no SSH. */
import test from 'ava';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import { Agent } from '../../src/services/peer/agent.js';
import { PROTOCOL_VERSION } from '../../src/services/peer/protocol.js';
import { makeAppliance } from '../helpers/appliance.js';

/** a control session: `ask` writes one request line and resolves with its reply line */
function session(agent: Agent) {
  const input = new PassThrough();
  const output = new PassThrough();
  const ended = agent.control({ input, output });
  const replies = createInterface({ input: output })[Symbol.asyncIterator]();
  let id = 0;
  const send = async (line: string) => {
    input.write(`${line}\n`);
    const next = await replies.next();
    return JSON.parse(next.value as string) as { id: number | null; result?: Record<string, unknown>; error?: { code: string; message: string } };
  };
  return {
    ask: (method: string, params: unknown = {}) => send(JSON.stringify({ id: ++id, method, params })),
    raw: send,
    async end() {
      input.end();
      return ended;
    },
  };
}

const hello = (from: string, extra: Record<string, unknown> = {}) => ({ protocol: PROTOCOL_VERSION, from, version: '0.1.0', ...extra });

test('hello, then ping: the replies carry the request ids, and the session ends with its input', async (t) => {
  const { services } = makeAppliance(t, 'alpha');
  const s = session(new Agent(services, null, 'test'));
  const hi = await s.ask('hello', hello('beta', { purpose: 'bind' }));
  t.like(hi, { id: 1, result: { protocol: PROTOCOL_VERSION, id: 'alpha' } });
  t.deepEqual(await s.ask('ping'), { id: 2, result: {} });
  t.is(await s.end(), 0);
});

test('each bad request gets its own error code and sentence, and the session goes on', async (t) => {
  const { services } = makeAppliance(t, 'alpha');
  const s = session(new Agent(services, 'beta', 'test'));
  t.deepEqual(await s.ask('ping'), { id: 1, error: { code: 'bad-request', message: 'Say hello first.' } });
  const garbled = await s.raw('{not json');
  t.like(garbled, { id: null, error: { code: 'bad-request' } });
  t.regex(garbled.error!.message, /^Not a JSON request: /);
  t.like(await s.ask('hello', { ...hello('beta'), protocol: 99 }), { id: 2, error: { code: 'protocol' } });
  t.like(await s.ask('hello', hello('gamma', { purpose: 'bind' })), { id: 3, error: { code: 'identity', message: 'this key was given to the appliance beta; gamma may not use it.' } });
  t.like(await s.ask('hello', hello('beta')), { id: 4, error: { code: 'unbound', message: 'the appliance beta is not bound to alpha.' } });
  t.is(await s.end(), 0);
});

test('a data channel without a valid header reports it on its output and changes nothing', async (t) => {
  const { services } = makeAppliance(t, 'alpha');
  const input = new PassThrough();
  const output = new PassThrough();
  const chunks: Buffer[] = [];
  output.on('data', (c: Buffer) => chunks.push(c));
  input.end('not a header\n');
  const code = await new Agent(services, null, 'test').data('receive', { input, output });
  output.end();
  await once(output, 'end');
  t.is(code, 2);
  t.like(JSON.parse(Buffer.concat(chunks).toString()), { ok: false, error: { code: 'bad-request' } });
  t.regex(JSON.parse(Buffer.concat(chunks).toString()).error.message, /^No valid header: /);
});
