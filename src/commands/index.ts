/** The one command table: every family, compiled into the tree that parsing, completion and help share. */
import { compile, type Grammar } from './grammar/compile.js';
import type { GrammarContext, InstanceKind } from './grammar/types.js';
import { autoSyncFamily } from './auto-sync.js';
import { folderFamily } from './folder.js';
import { generalFamily } from './general.js';
import { applianceFamily } from './appliance.js';
import { networkFamily } from './network.js';
import { consoleFamily } from './console.js';
import { zvolFamily } from './zvol.js';
import { cdpFamily } from './cdp.js';
import { cdpRolesFamily } from './cdp-roles.js';

export const instanceKinds: InstanceKind[] = [
  { kind: 'auto-sync', help: 'an auto-sync service instance', list: (ctx: GrammarContext) => ctx.instances('auto-sync') },
  { kind: 'auto-cdp', help: 'an auto-cdp mirror', list: (ctx: GrammarContext) => ctx.instances('auto-cdp') },
];

let compiled: Grammar | null = null;

export function grammar(): Grammar {
  compiled ??= compile([generalFamily(grammar), autoSyncFamily, folderFamily, applianceFamily, networkFamily, consoleFamily, zvolFamily, cdpFamily, cdpRolesFamily], instanceKinds);
  return compiled;
}
