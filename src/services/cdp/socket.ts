/** Where this appliance's daemon takes mirror streams; apart from agent.ts, whose modules (owed, receiver) a start does not need. */
import path from 'node:path';
import type { Home } from '../home.js';

export function cdpSocket(home: Home): string {
  return path.join(home.root, 'run', 'cdp.sock');
}
