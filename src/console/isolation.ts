/**
 * One SSH session cannot take the console down. Each connection and each
 * session runs inside a scope (AsyncLocalStorage): an error that escapes
 * through a timer, a promise or a callback the session started still carries
 * its scope, so the one process-wide handler (installed at start-up, before
 * any session) ends that session only, as wish ends only the session whose
 * program panicked. Listeners on ssh2's objects run in the socket's context,
 * not the session's: `guard` runs them in the scope and turns an error they
 * throw into that scope's failure. An error outside every scope is the
 * server's own: it is told to `outside` (serve stops cleanly).
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface Scope {
  /** for the log: 'conn 3', 'conn 3 session 1' */
  label: string;
  /** end what this scope stands for (tell its client, close its channel); called at most once per error */
  fail(error: Error): void;
}

export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

export class Isolation {
  private readonly storage = new AsyncLocalStorage<Scope>();

  /** runs `fn` (and everything it starts) in `scope` */
  run<T>(scope: Scope, fn: () => T): T {
    return this.storage.run(scope, fn);
  }

  /** `fn` as a listener: run in `scope`, an error it throws fails the scope instead of reaching the emitter */
  guard<A extends unknown[]>(scope: Scope, fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) =>
      this.storage.run(scope, () => {
        try {
          fn(...args);
        } catch (error) {
          failSafely(scope, asError(error));
        }
      });
  }

  /** the scope the running code belongs to, if any */
  current(): Scope | undefined {
    return this.storage.getStore();
  }

  /**
   * The process-wide handlers for errors that escaped (uncaught exceptions,
   * unhandled rejections): the scope they were thrown in fails; one thrown
   * outside every scope goes to `outside`. Install once, at start-up; the
   * result removes them.
   */
  install(outside: (error: Error) => void): () => void {
    const escaped = (value: unknown) => {
      const error = asError(value);
      const scope = this.current();
      if (scope) failSafely(scope, error);
      else outside(error);
    };
    process.on('uncaughtException', escaped);
    process.on('unhandledRejection', escaped);
    return () => {
      process.off('uncaughtException', escaped);
      process.off('unhandledRejection', escaped);
    };
  }
}

/** a failure while failing (the channel already gone) must not escape again */
function failSafely(scope: Scope, error: Error): void {
  try {
    scope.fail(error);
  } catch {
    // the scope's client is gone; nothing is left to tell
  }
}
