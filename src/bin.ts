import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Stop what a live view or a lingering handle may keep alive.
    setImmediate(() => process.exit(code));
  },
  (error: unknown) => {
    process.stderr.write(`syncsh: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(70);
  },
);
