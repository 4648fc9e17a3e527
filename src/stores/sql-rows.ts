// The lease tables as the SQL stores (SQLite, PostgreSQL) read them: one column per field, snake_case, and
// the mapping to the rows the shared lease rules in contract.ts work on.
import type { LeaseRow, MonitorRow } from './contract.js';

export interface MonitorDbRow {
  monitor_id: string;
  host: string;
  pid: number;
  started_at: number;
  renewed_at: number;
  expires_at: number;
}

export interface LeaseDbRow {
  partition: number;
  monitor_id: string | null;
  /** A number from SQLite; a bigint, handed over as a string, from pg. */
  epoch: number | string;
  expires_at: number;
}

export function toMonitorRow(row: MonitorDbRow): MonitorRow {
  return {
    monitorId: row.monitor_id,
    host: row.host,
    pid: row.pid,
    startedAt: row.started_at,
    renewedAt: row.renewed_at,
    expiresAt: row.expires_at,
  };
}

export function toLeaseRow(row: LeaseDbRow): LeaseRow {
  return {
    partition: row.partition,
    monitorId: row.monitor_id,
    epoch: Number(row.epoch),
    expiresAt: row.expires_at,
  };
}
