/**
 * The `create auto-sync` dialog: source, destination, schedule, retention
 * and reverse capability, each checked as it is answered, then a summary to
 * confirm. Answers given as options are not asked again.
 */
import type { CommandContext } from './grammar/types.js';
import { DEFAULTS, parseCount, parseRetention, SCHEDULE_TYPES, storedRetention, type CreateRequest, type ScheduleType } from '../services/auto-sync/index.js';
import { describe as describeSchedule } from '../services/schedule.js';

const NONE = '(type a dataset name)';

export const REVERSE_HELP =
  "Decide if you going to use reverse-direction command in future. This option will work only if service has been setup between two appliances. Service will create its copy on another appliance. If not sure, please select 'no'. You will be able to turn on this option later by executing 'reverse-direction'.";

/** null when the person declined the summary */
export async function runWizard(ctx: CommandContext, given: Partial<CreateRequest>): Promise<CreateRequest | null> {
  const { dialogs, services } = ctx;
  const auto = services.autoSync;
  const req: Partial<CreateRequest> = { ...given };

  const check = (fn: () => unknown): string | null => {
    try {
      fn();
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  };

  req.fromHost ??= 'localhost';
  // The source must exist before anything else is asked: ask again until it does.
  for (;;) {
    if (!req.fromFs) {
      const folders = (await services.folders.list()).map((f) => f.qualified);
      const pick = folders.length
        ? await dialogs.select('Source folder', [...folders.map((f) => ({ value: f })), { value: NONE, label: NONE }], {
            help: 'The folder (dataset) to replicate. Every file, snapshot and child folder of it is mirrored.',
          })
        : NONE;
      req.fromFs =
        pick !== NONE
          ? pick
          : await dialogs.input('Source folder', {
              help: 'The dataset to replicate, driver-qualified: fs:tank/data, zfs:pool/fs or btrfs:/mnt/pool/subvol.',
              validate: (v) => check(() => auto.parseEndpoint('source', req.fromHost, v)),
            });
    }
    try {
      await auto.checkSource(req.fromHost, req.fromFs);
      break;
    } catch (error) {
      if (given.fromFs) throw error;
      ctx.progress((error as Error).message);
      req.fromFs = undefined;
    }
  }

  req.toHost ??= await dialogs.input('Destination appliance', {
    help: "The appliance that receives the copy: 'localhost' for this one, or a bound appliance.",
    default: 'localhost',
    validate: (v) => check(() => auto.parseEndpoint('destination', v, 'fs:probe/probe')),
  });
  req.toFs ??= await dialogs.input('Destination folder', {
    help: 'The dataset that becomes the mirror. It is created on the first run and must not hold other data.',
    default: `${req.fromFs}-mirror`,
    validate: (v) =>
      check(() => {
        auto.parseEndpoint('destination', req.toHost, v);
        if (v === req.fromFs) throw new Error('The destination must not be the source.');
      }),
  });

  if (req.cron === undefined && req.onceAt === undefined) {
    req.type ??= await dialogs.select<ScheduleType>(
      'Schedule type',
      SCHEDULE_TYPES.map((t) => ({ value: t })),
      {
        default: DEFAULTS.type,
        help: 'How often the service replicates: every N minutes, hours, days, weeks or months.',
      },
    );
    req.period ??= Number(
      await dialogs.input(`Period (every N ${req.type}s)`, {
        default: String(DEFAULTS.period),
        help: `Replicate every N ${req.type}s.`,
        validate: (v) => check(() => parseCount('the period', v, 1, 10_000)),
      }),
    );
  }
  req.keepSrc ??= storedRetention(
    parseRetention(
      'keep-src',
      await dialogs.input('Snapshots to keep on the source', {
        default: String(DEFAULTS.keepSrc),
        help: "Marker snapshots kept on the source: a count, or a grid such as 'all 1d, 24h 7d 4w 12m'; the last one in common with the destination is always kept.",
        validate: (v) => check(() => parseRetention('keep-src', v)),
      }),
    ),
  );
  req.keepDst ??= storedRetention(
    parseRetention(
      'keep-dst',
      await dialogs.input('Snapshots to keep on the destination', {
        default: String(DEFAULTS.keepDst),
        help: "Marker snapshots kept on the destination: a count, or a grid such as 'all 1d, 24h 7d 4w 12m'; the last one in common with the source is always kept.",
        validate: (v) => check(() => parseRetention('keep-dst', v)),
      }),
    ),
  );

  while (req.reverseCapable === undefined) {
    const answer = await dialogs.select(
      'Reverse capability',
      [
        { value: 'yes', description: 'Keep a copy of this service on the other appliance' },
        { value: 'no', description: 'Use regular auto-sync service' },
      ],
      { default: 'no', help: REVERSE_HELP },
    );
    const local = req.toHost === 'localhost' && req.fromHost === 'localhost';
    if (answer === 'yes' && local) {
      ctx.progress("Reverse capability needs a service between two appliances; this one is local-to-local. Please select 'no'.");
      continue;
    }
    req.reverseCapable = answer === 'yes';
  }

  const planned = await auto.plan(req as CreateRequest);
  ctx.progress(
    [
      '',
      `  service      : auto-sync:${planned.name}`,
      `  source       : ${planned.source.host}/${planned.source.dataset}`,
      `  destination  : ${planned.destination.host}/${planned.destination.dataset}`,
      `  schedule     : ${describeSchedule(planned.schedule)}`,
      `  keep         : ${planned.keepSrc} on the source, ${planned.keepDst} on the destination`,
      `  reverse      : ${planned.reverseCapable ? 'yes' : 'no'}`,
      '',
    ].join('\n'),
  );
  const ok = await dialogs.confirm(`Create auto-sync:${planned.name}?`, { default: true, help: 'The service is created enabled and runs on its schedule; run it now with run auto-sync.' });
  return ok ? (req as CreateRequest) : null;
}
