/**
 * The Terminal on an SSH channel, on an in-memory channel: what a line
 * discipline would do (CRLF out, Ctrl-C outside raw mode), the size from the
 * pty, resize, colour, and the end of the channel.
 */
import test from 'ava';
import { Duplex, PassThrough, Writable } from 'node:stream';
import { sshTerminal, toCrlf, type SessionChannel } from '../../src/shell/ssh-terminal.js';

/** a channel whose client side is `typed` (what the client sends) and `shown`/`stderr` (what it receives) */
function channel() {
  const toServer = new PassThrough();
  let shown = '';
  let stderr = '';
  const ch = new Duplex({
    read() {},
    write(chunk, _e, done) {
      shown += String(chunk);
      done();
    },
  }) as Duplex & { stderr: Writable };
  ch.stderr = new Writable({
    write(chunk, _e, done) {
      stderr += String(chunk);
      done();
    },
  });
  toServer.on('data', (d) => ch.push(d));
  toServer.on('end', () => ch.push(null));
  return { ch: ch as SessionChannel, type: (s: string) => toServer.write(s), eof: () => toServer.end(), shown: () => shown, stderr: () => stderr };
}

const flush = () => new Promise((r) => setImmediate(r));

test('LF becomes CRLF, once, across chunks', (t) => {
  t.is(toCrlf(Buffer.from('a\nb\r\nc\n'), false).toString(), 'a\r\nb\r\nc\r\n');
  t.is(toCrlf(Buffer.from('\nx'), true).toString(), '\nx', 'the CR came at the end of the chunk before');
  t.is(toCrlf(Buffer.from('\nx'), false).toString(), '\r\nx');
  const same = Buffer.from('no newline');
  t.is(toCrlf(same, false), same);
});

test('with a pty: sized by it, CRLF out, errors on the same stream, colour unless NO_COLOR or dumb', async (t) => {
  const c = channel();
  const term = sshTerminal(c.ch, { pty: { term: 'xterm-256color', cols: 120, rows: 40 } });
  t.true(term.interactive);
  t.true(term.color);
  t.is(term.name, 'xterm-256color');
  t.is(term.columns(), 120);
  t.is(term.rows(), 40);
  t.is(term.output.columns, 120);
  t.true(term.input.isTTY);
  term.output.write('one\ntwo\r\n');
  term.errors.write('Error: bad\n');
  await flush();
  t.is(c.shown(), 'one\r\ntwo\r\nError: bad\r\n');
  t.is(c.stderr(), '');

  t.false(sshTerminal(channel().ch, { pty: { term: 'xterm', cols: 80, rows: 24 }, env: { NO_COLOR: '1' } }).color);
  t.false(sshTerminal(channel().ch, { pty: { term: 'dumb', cols: 80, rows: 24 } }).color);
});

test('in raw mode a hang-up is read as Ctrl-C (a dialog or a live view gives up); without a pty EOF is only the end', async (t) => {
  const c = channel();
  const term = sshTerminal(c.ch, { pty: { term: 'xterm', cols: 80, rows: 24 } });
  term.input.setRawMode!(true);
  let read = '';
  term.input.on('data', (d) => (read += String(d)));
  c.type('x');
  await flush();
  term.close();
  await flush();
  t.is(read, 'x\u0003');

  const d = channel();
  const plain = sshTerminal(d.ch, { pty: null });
  let interrupts = 0;
  plain.onInterrupt = () => interrupts++;
  let text = '';
  plain.input.on('data', (chunk) => (text += String(chunk)));
  d.type('show folder\n');
  d.eof();
  await flush();
  await flush();
  t.is(text, 'show folder\n');
  t.is(interrupts, 0);
});

test('without a pty (exec): not interactive, bytes as they are, errors on stderr', async (t) => {
  const c = channel();
  const term = sshTerminal(c.ch, { pty: null });
  t.false(term.interactive);
  t.false(term.color);
  t.is(term.name, 'dumb');
  t.is(term.columns(), 80);
  term.output.write('a\nb\n');
  term.errors.write('Error: x\n');
  await flush();
  t.is(c.shown(), 'a\nb\n');
  t.is(c.stderr(), 'Error: x\n');
});

test('window-change resizes and emits resize on the output, as a tty does', (t) => {
  const term = sshTerminal(channel().ch, { pty: { term: 'xterm', cols: 80, rows: 24 } });
  let resized = 0;
  term.output.on('resize', () => resized++);
  term.resize(100, 30);
  t.is(resized, 1);
  t.is(term.columns(), 100);
  t.is(term.output.rows, 30);
});

test('Ctrl-C outside raw mode interrupts instead of being read; in raw mode it is a key', async (t) => {
  const c = channel();
  const term = sshTerminal(c.ch, { pty: { term: 'xterm', cols: 80, rows: 24 } });
  let interrupts = 0;
  term.onInterrupt = () => interrupts++;
  const read: string[] = [];
  term.input.on('data', (d) => read.push(String(d)));
  c.type('ab\u0003cd');
  await flush();
  t.is(interrupts, 1);
  t.deepEqual(read.join(''), 'abcd');
  term.input.setRawMode!(true);
  c.type('\u0003');
  await flush();
  t.is(interrupts, 1);
  t.is(read.join(''), 'abcd\u0003');

  // the client's own interrupt character (VINTR) counts, not Ctrl-C
  const d = channel();
  const other = sshTerminal(d.ch, { pty: { term: 'xterm', cols: 80, rows: 24, intr: 0x07 } });
  let n = 0;
  other.onInterrupt = () => n++;
  other.input.resume();
  d.type('\u0007\u0003');
  await flush();
  t.is(n, 1);
});

test('a hang-up interrupts whoever reads, then ends the input; after close, output is dropped', async (t) => {
  const c = channel();
  const term = sshTerminal(c.ch, { pty: { term: 'xterm', cols: 80, rows: 24 } });
  let ended = false;
  let interrupts = 0;
  term.onInterrupt = () => interrupts++;
  term.input.on('end', () => (ended = true));
  term.input.resume();
  c.eof();
  await flush();
  await flush();
  t.true(ended);
  t.is(interrupts, 1, 'the running command is cancelled');
  // a reader that comes after the end (the prompt after a dialog) is told at once
  const late = await new Promise<boolean>((resolve) => {
    term.input.once('end', () => resolve(true));
    setTimeout(() => resolve(false), 200);
  });
  t.true(late);
  term.close();
  term.output.write('lost\n');
  await flush();
  t.is(c.shown(), '');
  // ending the output (as inquirer would) does not end the channel
  term.output.end();
  t.false(c.ch.writableEnded);
});
