/**
 * What NMC's dialogs look like, as lines of text for a given width:
 *
 *   Reverse capability      :
 *   yes  no                      <- the current choice highlighted
 *   -----
 *   Help paragraph, wrapped. Navigate with arrow keys (or hjkl), or Ctrl-C to exit.
 *   Use regular auto-sync service   <- the current choice's description
 *
 * and, once answered, the one line left on screen: `Question? Answer`.
 */
import { wrapWords } from '../line-editor/layout.js';
import { paint } from '../render.js';

/** NMC pads a field's label to this width before its colon */
export const LABEL_WIDTH = 24;
export const RULE = '-----';
export const NAVIGATE_HINT = 'Navigate with arrow keys (or hjkl), or Ctrl-C to exit.';
export const TYPE_HINT = 'Press Enter to accept, or Ctrl-C to exit.';

const ESC = '\u001b[';
const inverse = (s: string, on: boolean) => (on ? `${ESC}7m${s}${ESC}27m` : s);

/** a question is shown as asked; a label ("Reverse capability") as a field, `label   :` */
export function questionLine(question: string): string {
  return /[?:]$/.test(question) ? question : `${question.padEnd(LABEL_WIDTH - 1)} :`;
}

export function answerLine(question: string, answer: string, color: boolean): string {
  return answer ? `${questionLine(question)} ${paint.bold(answer, color)}` : questionLine(question);
}

/** the help paragraph, always ending with how to move and leave */
export function helpParagraph(help: string | undefined, hint: string, width: number): string[] {
  return wrapWords(help ? `${help.trim()} ${hint}` : hint, width);
}

/**
 * The choices on one line, flowing onto more when they do not fit; when even
 * that is more than `maxLines`, the lines around the current choice, with …
 * where choices are hidden.
 */
export function choiceLines(labels: string[], current: number, width: number, maxLines: number, color: boolean): string[] {
  const shown = labels.map((l, i) => (i !== current ? l : color ? inverse(l, true) : `[${l}]`));
  const visibleWidth = (i: number) => labels[i].length + (i === current && !color ? 2 : 0);
  const room = Math.max(1, width - 2); // the … markers
  const lines: { text: string; width: number; hasCurrent: boolean }[] = [];
  for (let i = 0; i < labels.length; i++) {
    const last = lines.at(-1);
    if (last && last.width + 2 + visibleWidth(i) <= room) {
      last.text += `  ${shown[i]}`;
      last.width += 2 + visibleWidth(i);
      last.hasCurrent ||= i === current;
    } else lines.push({ text: shown[i], width: visibleWidth(i), hasCurrent: i === current });
  }
  const limit = Math.max(1, maxLines);
  if (lines.length <= limit) return lines.map((l) => l.text);
  const at = lines.findIndex((l) => l.hasCurrent);
  const start = Math.max(0, Math.min(at - Math.floor(limit / 2), lines.length - limit));
  const window = lines.slice(start, start + limit).map((l) => l.text);
  if (start > 0) window[0] = `… ${window[0]}`;
  if (start + limit < lines.length) window[window.length - 1] += ' …';
  return window;
}

export interface SelectView {
  question: string;
  labels: string[];
  current: number;
  help?: string;
  /** the current choice's description */
  description?: string;
  width: number;
  height: number;
  color: boolean;
}

export function selectLines(view: SelectView): string[] {
  const help = helpParagraph(view.help, NAVIGATE_HINT, view.width);
  const description = view.description ? wrapWords(view.description, view.width).map((l) => paint.bold(l, view.color)) : [];
  const label = questionLine(view.question);
  // wrapping would squeeze the label's padding: only a line too long is wrapped
  const question = label.length <= view.width ? [label] : wrapWords(label, view.width);
  // keep the whole dialog on screen: the choices get what the rest leaves
  const room = view.height - question.length - help.length - description.length - 2;
  return [...question, ...choiceLines(view.labels, view.current, view.width, room, view.color), RULE, ...help, ...description];
}

export interface FieldView {
  question: string;
  /** what is typed, as shown (nothing for a password) */
  value: string;
  error: string | null;
  help?: string;
  width: number;
  color: boolean;
}

/** [the field line, the lines under it]: the terminal's cursor sits at the end of the field */
export function fieldLines(view: FieldView): [string, string[]] {
  const under = [...(view.error ? wrapWords(view.error, view.width).map((l) => paint.red(l, view.color)) : []), RULE, ...helpParagraph(view.help, TYPE_HINT, view.width)];
  return [`${questionLine(view.question)} ${view.value}`, under];
}
