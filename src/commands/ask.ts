/** Confirmation as every destructive command asks it: -y answers, no terminal refuses. */
import { NoTerminalError } from './dialogs.js';
import type { CommandContext } from './grammar/types.js';

export async function confirmed(ctx: CommandContext, question: string, help?: string): Promise<boolean> {
  if (ctx.yes) return true;
  if (!ctx.interactive) throw new NoTerminalError(question);
  return ctx.dialogs.confirm(question, { help, default: false });
}

export const NOTHING_CHANGED = { kind: 'message', text: 'Nothing was changed.' } as const;
