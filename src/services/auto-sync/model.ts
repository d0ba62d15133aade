/**
 * What an auto-sync service is: its configuration (kept in services.json and,
 * once reverse capability is on, on both appliances) and its run state.
 */
import { CODECS, type Codec } from '../wire/codec-names.js';
import { MAINTENANCE_KINDS, type Maintenance } from './maintenance.js';
import type { Role } from '../roles.js';

export const SCHEDULE_TYPES = ['minute', 'hour', 'day', 'week', 'month'] as const;
export type ScheduleType = (typeof SCHEDULE_TYPES)[number];

export type Direction = 'local-to-local' | 'local-to-remote' | 'remote-to-local';
/** one module of roles and epochs serves auto-sync and auto-cdp */
export type { Role } from '../roles.js';

export interface Endpoint {
  /** 'localhost' or the id / address of a bound appliance */
  host: string;
  /** driver-qualified dataset, e.g. fs:tank/data */
  dataset: string;
}

/** every `period` `type`s, NMC style */
export interface Schedule {
  type: ScheduleType;
  period: number;
}

/** an interval, a five-field cron expression, or a single run at a time (see ../schedule.ts) */
export type ServiceSchedule = Schedule | { cron: string } | { onceAt: string };

export interface AutoSyncConfig {
  name: string;
  source: Endpoint;
  destination: Endpoint;
  direction: Direction;
  schedule: ServiceSchedule;
  /** retention of markers on each side: a count, or a grid as text (retention.ts) */
  keepSrc: number | string;
  keepDst: number | string;
  recursive: boolean;
  /** gitignore-style patterns left out of the source's snapshots (fs driver only); absent: none */
  exclude?: string[];
  /** bytes per second a transfer may use; absent or 0: no limit */
  rateLimit?: number;
  /** how the bytes cross the wire to a peer (wire/codecs.ts); absent: none */
  compress?: Codec;
  reverseCapable: boolean;
  /** seconds without a successful sync before status turns warn */
  maxDelay: number;
  comment: string;
  /** allow rolling back a destination that was written to */
  force: boolean;
  enabled: boolean;
  role: Role;
  epoch: number;
  /** set when the service is in maintenance: why, and the command that fixes it */
  maintenance: Maintenance | null;
  createdAt: string;
}

export type ServiceState = 'online' | 'running' | 'disabled' | 'maintenance';

export interface RunState {
  sequence: number;
  lastMarker: string | null;
  lastMarkerId: string | null;
  lastRunAt: string | null;
  lastSuccessAt: string | null;
  lastResult: 'success' | 'failure' | null;
  lastError: string | null;
  lastBytes: number;
  lastDurationMs: number;
  /** failed runs, ever */
  failures: number;
  /** failed runs since the last success (drives retry backoff) */
  consecutiveFailures: number;
  /** a run started and has not ended: after a crash, the daemon counts it as failed */
  inFlight: boolean;
}

export const EMPTY_RUN_STATE: RunState = {
  sequence: 0,
  lastMarker: null,
  lastMarkerId: null,
  lastRunAt: null,
  lastSuccessAt: null,
  lastResult: null,
  lastError: null,
  lastBytes: 0,
  lastDurationMs: 0,
  failures: 0,
  consecutiveFailures: 0,
  inFlight: false,
};

const endpointSchema = {
  type: 'object',
  required: ['host', 'dataset'],
  properties: { host: { type: 'string', minLength: 1 }, dataset: { type: 'string', minLength: 3 } },
} as const;

/** The JSON schema conf validates services.json against. */
export const serviceSchema = {
  type: 'object',
  required: ['name', 'source', 'destination', 'direction', 'schedule', 'keepSrc', 'keepDst', 'recursive', 'reverseCapable', 'maxDelay', 'comment', 'force', 'enabled', 'role', 'epoch', 'maintenance', 'createdAt'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9_-]+-[0-9]{3,}$' },
    source: endpointSchema,
    destination: endpointSchema,
    direction: { enum: ['local-to-local', 'local-to-remote', 'remote-to-local'] },
    schedule: {
      oneOf: [
        { type: 'object', required: ['type', 'period'], additionalProperties: false, properties: { type: { enum: [...SCHEDULE_TYPES] }, period: { type: 'integer', minimum: 1 } } },
        { type: 'object', required: ['cron'], additionalProperties: false, properties: { cron: { type: 'string', minLength: 1 } } },
        { type: 'object', required: ['onceAt'], additionalProperties: false, properties: { onceAt: { type: 'string', minLength: 10 } } },
      ],
    },
    keepSrc: {
      oneOf: [
        { type: 'integer', minimum: 1 },
        { type: 'string', minLength: 1 },
      ],
    },
    keepDst: {
      oneOf: [
        { type: 'integer', minimum: 1 },
        { type: 'string', minLength: 1 },
      ],
    },
    recursive: { type: 'boolean' },
    exclude: { type: 'array', items: { type: 'string', minLength: 1 } },
    rateLimit: { type: 'integer', minimum: 0 },
    compress: { enum: [...CODECS] },
    reverseCapable: { type: 'boolean' },
    maxDelay: { type: 'integer', minimum: 0 },
    comment: { type: 'string' },
    force: { type: 'boolean' },
    enabled: { type: 'boolean' },
    role: { enum: ['master', 'non-master'] },
    epoch: { type: 'integer', minimum: 0 },
    maintenance: {
      oneOf: [
        { type: 'null' },
        // as versions before { kind, reason, fix } wrote it; the store upgrades it on read
        { type: 'string' },
        { type: 'object', required: ['kind', 'reason', 'fix'], properties: { kind: { enum: [...MAINTENANCE_KINDS] }, reason: { type: 'string' }, fix: { type: 'string' } } },
      ],
    },
    createdAt: { type: 'string' },
  },
} as const;

export function directionOf(source: Endpoint, destination: Endpoint): Direction {
  const local = (host: string) => host === 'localhost';
  if (local(source.host) && local(destination.host)) return 'local-to-local';
  if (local(source.host)) return 'local-to-remote';
  return 'remote-to-local';
}
