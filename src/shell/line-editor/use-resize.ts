import { useEffect, useReducer } from 'react';
import { useStdout } from './ink.js';

/** redraw when the terminal is resized: what is drawn depends on its width */
export function useResize(): void {
  const { stdout } = useStdout();
  const [, redraw] = useReducer((n: number) => n + 1, 0);
  useEffect(() => {
    stdout.on('resize', redraw);
    return () => {
      stdout.off('resize', redraw);
    };
  }, [stdout]);
}
