import { useEffect, useRef } from 'react';
import { useStdin } from './ink.js';

/**
 * Raw input as ink reads it. useInput is not enough here: it reports
 * Backspace (DEL) and the Delete key alike, and hands typed-ahead text over
 * with its Enter inside.
 */
export function useTerminalInput(onInput: (raw: string) => void): void {
  const { setRawMode, internal_eventEmitter: events } = useStdin();
  const handler = useRef(onInput);
  handler.current = onInput;
  useEffect(() => {
    const listener = (raw: string | Buffer) => handler.current(String(raw));
    setRawMode(true);
    events.on('input', listener);
    return () => {
      events.off('input', listener);
      setRawMode(false);
    };
  }, [setRawMode, events]);
}
