/**
 * The one command table: every family, compiled into the tree that parsing,
 * completion and help share. A family brings its own instance kinds (its
 * `instances`), so adding one is a line here and nothing in the shell.
 */
import { compile, type Grammar } from './grammar/compile.js';
import { autoSyncFamily } from './auto-sync.js';
import { folderFamily } from './folder.js';
import { generalFamily } from './general.js';
import { applianceFamily } from './appliance.js';
import { networkFamily } from './network.js';
import { consoleFamily } from './console.js';
import { zvolFamily } from './zvol.js';
import { cdpFamily } from './cdp.js';
import { cdpRolesFamily } from './cdp-roles.js';

let compiled: Grammar | null = null;

export function grammar(): Grammar {
  compiled ??= compile([generalFamily(grammar), autoSyncFamily, folderFamily, applianceFamily, networkFamily, consoleFamily, zvolFamily, cdpFamily, cdpRolesFamily]);
  return compiled;
}
