/**
 * Compression of the bytes between two appliances (the `compress`
 * property): gzip with Node's zlib; zstd and lz4 with their programs (Node
 * 20's zlib has neither), piped as syncoid does. A codec that is not there
 * is refused when it is set, with what to install, not at a run.
 */
import { createGunzip, createGzip } from 'node:zlib';
import type { Duplex } from 'node:stream';
import { loadExeca } from '../lazy.js';

import type { Codec } from './codec-names.js';

export { CODECS, parseCodec, type Codec } from './codec-names.js';

/** the program behind a codec, with its compress and decompress arguments (fast levels: the wire, not the archive) */
const PROGRAMS: Partial<Record<Codec, { file: string; compress: string[]; decompress: string[]; pkg: string }>> = {
  zstd: { file: 'zstd', compress: ['-q', '-c', '-1', '-T0'], decompress: ['-q', '-d', '-c'], pkg: 'zstd' },
  lz4: { file: 'lz4', compress: ['-q', '-c', '-1'], decompress: ['-q', '-d', '-c'], pkg: 'lz4' },
};

/** null when this appliance can use `codec`, else the sentence saying why not (`where` names the appliance in it) */
export async function codecUnavailable(codec: Codec, where = 'this appliance'): Promise<string | null> {
  const program = PROGRAMS[codec];
  if (!program) return null;
  const { execa } = await loadExeca();
  const found = await execa(program.file, ['--version'], { reject: false, stdin: 'ignore' });
  if (!found.failed) return null;
  const missing = (found as { code?: string }).code === 'ENOENT';
  return `${codec} is not available on ${where}: ${missing ? `the ${program.file} program was not found` : `${program.file} --version failed (${found.stderr.trim().split('\n')[0] ?? 'no message'})`}; install the ${program.pkg} package, or use gzip or none.`;
}

/** a stream that compresses (or decompresses) what is written to it; null for none */
export async function codecStream(codec: Codec, direction: 'compress' | 'decompress'): Promise<Duplex | null> {
  if (codec === 'none') return null;
  if (codec === 'gzip') return direction === 'compress' ? createGzip({ level: 1, chunkSize: 64 << 10 }) : createGunzip({ chunkSize: 64 << 10 });
  const program = PROGRAMS[codec]!;
  const why = await codecUnavailable(codec);
  if (why) throw new Error(why);
  const { execa } = await loadExeca();
  const child = execa(program.file, program[direction], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', buffer: { stdout: false, stderr: true } });
  child.catch(() => undefined); // its failure reaches the stream's reader as the stream's error
  const stream = child.duplex();
  // execa's destroy closes the program's pipes and then waits for it to exit; a program that
  // does not exit (blocked on a pipe a cut channel no longer drains) would keep the stream, and
  // whoever waits on it, forever. Whatever destroys the stream ends the program first. A destroy
  // without an error stays one (the kill is ours, not the program's failure).
  const close = stream._destroy.bind(stream);
  stream._destroy = (error: Error | null, callback: (error?: Error | null) => void) => {
    const running = child.exitCode === null && child.signalCode === null;
    if (running) child.kill('SIGKILL');
    close(error, (failure?: Error | null) => callback(error ?? (running ? null : failure)));
  };
  return stream;
}
