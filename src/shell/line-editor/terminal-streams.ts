/**
 * Views of a Terminal's streams as ink and inquirer expect them. Both libraries
 * read the size from the output stream itself (ink: `columns`/`rows`, inquirer:
 * `columns`), but over SSH the size lives in the Terminal, not the channel.
 * Inquirer also ends its output when a prompt is done (a pipe from its mute
 * stream), which would close an SSH channel; and ink needs `ref`/`unref` and
 * `setRawMode`, which a channel lacks. Everything else goes to the real stream.
 */
import type { Terminal, TerminalInput, TerminalOutput } from '../terminal.js';

const noop = () => undefined;

function view<T extends object>(target: T, overrides: Record<PropertyKey, () => unknown>): T {
  return new Proxy(target, {
    get(t, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop]();
      const value = Reflect.get(t, prop, t);
      // methods run on the real stream, which keeps its private state to itself
      return typeof value === 'function' ? value.bind(t) : value;
    },
    has: (t, prop) => Object.hasOwn(overrides, prop) || Reflect.has(t, prop),
  });
}

/** the output, sized like the Terminal, that nobody can end or destroy */
export function outputView(term: Terminal): TerminalOutput {
  return view(term.output, {
    columns: () => term.columns(),
    rows: () => term.rows(),
    isTTY: () => term.interactive,
    end:
      () =>
      (...args: unknown[]) => {
        // end(chunk?, cb?): write the chunk but leave the stream open
        const callback = args.find((a) => typeof a === 'function') as (() => void) | undefined;
        if (args.length && typeof args[0] !== 'function') term.output.write(args[0] as string);
        callback?.();
        return term.output;
      },
    destroy: () => () => term.output,
  });
}

/** the input with the raw-mode and event-loop controls ink calls, real or harmless */
export function inputView(term: Terminal): TerminalInput {
  const input = term.input as TerminalInput & { ref?: () => void; unref?: () => void };
  return view(input, {
    isTTY: () => true,
    setRawMode: () => (input.setRawMode ? input.setRawMode.bind(input) : noop),
    ref: () => (input.ref ? input.ref.bind(input) : noop),
    unref: () => (input.unref ? input.unref.bind(input) : noop),
  });
}

/**
 * Keeps the process alive while a dialog waits for keys: ink unrefs the input
 * when the prompt line closes, and an unrefed tty does not keep Node running.
 * Returns the release, which unrefs again as ink does.
 */
export function holdInput(term: Terminal): () => void {
  const input = term.input as TerminalInput & { ref?: () => void; unref?: () => void };
  input.ref?.();
  return () => input.unref?.();
}
