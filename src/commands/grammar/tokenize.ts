/**
 * Splits a command line into words, keeping where each starts so completion
 * knows what it replaces. Quotes ('…' and "…") and backslashes group words;
 * nothing is ever expanded or executed.
 */
export interface Token {
  text: string;
  start: number;
  end: number;
}

export interface Tokenized {
  tokens: Token[];
  /** an opening quote was never closed */
  unterminated: boolean;
  /** the line ends in whitespace: the next word has not begun */
  trailingSpace: boolean;
}

export function tokenize(line: string): Tokenized {
  const tokens: Token[] = [];
  let i = 0;
  let unterminated = false;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i])) i++;
    if (i >= line.length) break;
    const start = i;
    let text = '';
    while (i < line.length && !/\s/.test(line[i])) {
      const c = line[i];
      if (c === '"' || c === "'") {
        const close = line.indexOf(c, i + 1);
        if (close < 0) {
          text += line.slice(i + 1);
          i = line.length;
          unterminated = true;
          break;
        }
        text += line.slice(i + 1, close);
        i = close + 1;
      } else if (c === '\\' && i + 1 < line.length) {
        text += line[i + 1];
        i += 2;
      } else {
        text += c;
        i++;
      }
    }
    tokens.push({ text, start, end: i });
  }
  return { tokens, unterminated, trailingSpace: line.length > 0 && /\s$/.test(line) };
}

/** Quote a word for the command line when it needs it (completion of values with spaces). */
export function quoteWord(word: string): string {
  return /^[A-Za-z0-9_.:/@=+,%-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
