/**
 * A Terminal on an SSH channel. No kernel pty sits between the operator's
 * terminal and the shell here, so this does the little a line discipline
 * would: LF becomes CRLF on the way out (ONLCR), and the interrupt key typed
 * outside raw mode interrupts the running command instead of reaching a
 * reader (ISIG). The size comes from the pty request and follows
 * window-change, which also emits 'resize' on the output as a tty does.
 */
import { PassThrough, Writable, type Duplex } from 'node:stream';
import type { Terminal, TerminalInput, TerminalOutput } from './terminal.js';

/** what the client asked for in its pty request */
export interface PtyInfo {
  /** TERM, e.g. xterm-256color */
  term: string;
  cols: number;
  rows: number;
  /** the interrupt character (the pty mode VINTR); Ctrl-C when absent */
  intr?: number;
}

/** an SSH session channel: ssh2's ServerChannel, or a Duplex in tests */
export type SessionChannel = Duplex & { stderr: Writable };

export interface SshTerminal extends Terminal {
  /** the terminal type the client named ('dumb' without a pty) */
  readonly name: string;
  /** a window-change: the new size, then 'resize' on the output */
  resize(cols: number, rows: number): void;
  /** called on the interrupt key outside raw mode */
  onInterrupt: (() => void) | null;
  /** the channel is gone: end the input, drop further output */
  close(): void;
}

type ChannelInput = PassThrough & TerminalInput & { isRaw: boolean };

const CTRL_C = 0x03;
const LF = 0x0a;
const CR = 0x0d;

/** LF -> CRLF for lone LFs; `afterCr` says whether the previous chunk ended with CR */
export function toCrlf(chunk: Buffer, afterCr: boolean): Buffer {
  let extra = 0;
  for (let i = 0; i < chunk.length; i++) {
    if (chunk[i] === LF && !(i === 0 ? afterCr : chunk[i - 1] === CR)) extra++;
  }
  if (!extra) return chunk;
  const out = Buffer.allocUnsafe(chunk.length + extra);
  let j = 0;
  for (let i = 0; i < chunk.length; i++) {
    if (chunk[i] === LF && !(i === 0 ? afterCr : chunk[i - 1] === CR)) out[j++] = CR;
    out[j++] = chunk[i];
  }
  return out;
}

/** writes to the channel (translated when `crlf`), sized like the terminal; never ends the channel */
class ChannelOutput extends Writable implements TerminalOutput {
  private afterCr = false;
  closed = false;

  constructor(
    private readonly target: Writable,
    private readonly crlf: boolean,
    readonly isTTY: boolean,
    private readonly size: () => { cols: number; rows: number },
  ) {
    super({ decodeStrings: true });
  }

  get columns(): number {
    return this.size().cols;
  }

  get rows(): number {
    return this.size().rows;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.closed || this.target.destroyed || this.target.writableEnded) {
      done();
      return;
    }
    const data = this.crlf ? toCrlf(chunk, this.afterCr) : chunk;
    if (chunk.length) this.afterCr = chunk[chunk.length - 1] === CR;
    // a channel that closes with the write pending reports an error: the session is ending anyway
    this.target.write(data, () => done());
  }

  override _final(done: (error?: Error | null) => void): void {
    // the session ends the channel, not whoever wrote last
    done();
  }
}

export interface SshTerminalOptions {
  pty: PtyInfo | null;
  env?: Record<string, string>;
  /**
   * Wraps the listeners this puts on the channel. The channel's events come
   * from its socket, outside the session: the console runs them in the
   * session's scope, so that an error thrown by a reader ends that session only.
   */
  guard?<A extends unknown[]>(listener: (...args: A) => void): (...args: A) => void;
}

export function sshTerminal(channel: SessionChannel, opts: SshTerminalOptions): SshTerminal {
  const { pty } = opts;
  const guard = opts.guard ?? (<A extends unknown[]>(listener: (...args: A) => void) => listener);
  const env = opts.env ?? {};
  let cols = pty?.cols || 80;
  let rows = pty?.rows || 24;
  const intr = pty?.intr ?? CTRL_C;
  const size = () => ({ cols, rows });

  const input = new PassThrough() as ChannelInput;
  input.isTTY = Boolean(pty);
  input.isRaw = false;
  input.setRawMode = (mode: boolean) => {
    input.isRaw = mode;
    return input;
  };

  // A reader that starts after the channel ended (the prompt that follows a dialog the client
  // left in the middle) would wait for an 'end' that has been already: it is told at once.
  for (const method of ['on', 'once', 'addListener'] as const) {
    const original = input[method].bind(input) as (event: string | symbol, listener: (...args: unknown[]) => void) => ChannelInput;
    input[method] = ((event: string | symbol, listener: (...args: unknown[]) => void) => {
      if (event === 'end' && input.readableEnded) {
        process.nextTick(listener);
        return input;
      }
      return original(event, listener);
    }) as ChannelInput['on'];
  }

  const output = new ChannelOutput(channel, Boolean(pty), Boolean(pty), size);
  // with a pty the client shows one stream; ordering across two SSH streams is not kept
  const errors = pty ? output : new ChannelOutput(channel.stderr, false, false, size);

  const onData = guard((chunk: Buffer) => {
    let data = chunk;
    if (pty && !input.isRaw && intr !== 0xff && data.includes(intr)) {
      data = Buffer.from(data.filter((b) => b !== intr));
      term.onInterrupt?.();
    }
    if (data.length && !input.write(data)) channel.pause();
  });
  channel.on('data', onData);
  input.on('drain', () => channel.resume());
  const endInput = () => {
    if (!input.writableEnded) input.end();
  };
  // With a pty the client only sends EOF as it goes: a hang-up reaches whoever reads as Ctrl-C
  // would (a dialog, a live view, the running command), so that it gives up; then the input ends.
  // Without one, EOF is the end of the commands piped in.
  const hangUp = () => {
    if (pty && !input.writableEnded) {
      if (input.isRaw) input.write(Buffer.from([CTRL_C]));
      else term.onInterrupt?.();
    }
    endInput();
  };
  channel.once('end', guard(hangUp));

  const term: SshTerminal = {
    input,
    output,
    errors,
    interactive: Boolean(pty),
    color: Boolean(pty) && pty?.term !== 'dumb' && !('NO_COLOR' in env),
    columns: () => cols,
    rows: () => rows,
    name: pty?.term || 'dumb',
    onInterrupt: null,
    resize(c, r) {
      if (c > 0) cols = c;
      if (r > 0) rows = r;
      output.emit('resize');
    },
    close() {
      output.closed = true;
      if (errors !== output) (errors as ChannelOutput).closed = true;
      channel.off('data', onData);
      hangUp();
    },
  };
  return term;
}
