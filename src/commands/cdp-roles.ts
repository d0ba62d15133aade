/** auto-cdp roles: switch one mirror (qsync -s NAME -m ROLE) or all (qsync -f -m ROLE); src/services/cdp/role-switch.ts decides. */
import type { CommandContext, CommandFamily, CommandSpec } from './grammar/types.js';
import { confirmed, NOTHING_CHANGED } from './ask.js';
import { CDP_ROLES, parseRole, type CdpRole } from '../services/cdp/roles.js';
// the switch (and the dirty maps and receiver it reads) loads when a role is switched, not at every start
import type { PreparedSwitch, SwitchResult } from '../services/cdp/role-switch.js';

const role = { name: 'master|slave', parse: (raw: string, label: string) => parseRole(raw, label), values: () => CDP_ROLES, help: 'master (orders and mirrors every write) or slave (forwards its writes to the master)' };

const switcher = async (ctx: CommandContext) => {
  const { CdpRoleSwitch } = await import('../services/cdp/role-switch.js');
  return new CdpRoleSwitch(ctx.services.cdp, ctx.services.peers, ctx.services.appliance.id);
};

const said = (r: SwitchResult, p: PreparedSwitch): string =>
  p.plan.change
    ? `auto-cdp:${r.name} is now ${r.config.role} here (epoch ${r.config.epoch}).${r.peerNotTold ? ` ${r.peerNotTold}.` : ''}${p.plan.warning ? ` ${p.plan.warning}` : ''}`
    : `auto-cdp:${r.name} is ${r.config.role} here already (epoch ${r.config.epoch}); nothing was changed.`;

const ONE_HELP = 'switch this copy of a mirror to master or slave (asks first); refused when it would make two masters while the peer answers';

const switchOne: CommandSpec = {
  path: 'setup auto-cdp :auto-cdp role <ROLE>',
  help: ONE_HELP,
  details:
    "A promotion takes an epoch past both copies': the other copy, when it answers, learns it and forwards its writes here; when it does not answer, it meets the newer epoch when it is back, keeps what it wrote meanwhile as an orphan snapshot of its zvol, becomes slave and resyncs.",
  args: { ROLE: role },
  async run(ctx, input) {
    const s = await switcher(ctx);
    const p = await s.prepare(input.instance!, input.args.ROLE as CdpRole);
    if (p.plan.change && !(await confirmed(ctx, p.plan.question, p.plan.warning ?? undefined))) return NOTHING_CHANGED;
    const r = await s.apply(p);
    return { kind: 'message', text: said(r, p), data: { ...r, warning: p.plan.warning } };
  },
};

const switchAll: CommandSpec = {
  path: 'setup auto-cdp role <ROLE>',
  help: 'switch every mirror of this appliance to master or slave (needs --all; asks first); none is switched when one is refused',
  // `help setup auto-cdp role` finds this page for both forms
  details: `Each mirror is planned as 'setup auto-cdp :NAME role ROLE' plans one: ${ONE_HELP}. When any would be refused, none is switched.`,
  args: { ROLE: role },
  options: [{ name: '--all', help: 'every mirror of this appliance (qsync -f)' }],
  async run(ctx, input) {
    const target = input.args.ROLE as CdpRole;
    if (!input.options.all) throw new Error(`'setup auto-cdp role ${target}' switches every mirror: say so with --all, or name one ('setup auto-cdp :NAME role ${target}'). Nothing was changed.`);
    const s = await switcher(ctx);
    const plans = await s.prepareAll(target);
    const changing = plans.filter((p) => p.plan.change);
    if (!changing.length) return { kind: 'message', text: `Every mirror is ${target} here already; nothing was changed.`, data: [] };
    const warnings = changing
      .map((p) => p.plan.warning)
      .filter(Boolean)
      .join(' ');
    if (!(await confirmed(ctx, `Switch ${changing.map((p) => `auto-cdp:${p.name}`).join(', ')} to ${target} here?`, warnings || undefined))) return NOTHING_CHANGED;
    const results: SwitchResult[] = [];
    for (const p of changing) results.push(await s.apply(p));
    return { kind: 'lines', lines: results.map((r, i) => said(r, changing[i])), data: results };
  },
};

export const cdpRolesFamily: CommandFamily = {
  words: { role: "a mirror copy's role: master orders and mirrors every write, slave forwards its writes to the master" },
  commands: [switchOne, switchAll],
};
