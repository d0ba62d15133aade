import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Exit once what was printed has been flushed (a pipe may still hold it),
    // so that a live view or a lingering handle cannot keep the process alive.
    process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
  },
  (error: unknown) => {
    // a damaged configuration file is the operator's to repair: its sentence, not a stack trace
    if ((error as Error)?.name === 'ConfigDamagedError') {
      process.stderr.write(`syncsh: ${(error as Error).message}\n`);
      process.exit(1);
    }
    process.stderr.write(`syncsh: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(70);
  },
);
