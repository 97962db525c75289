/**
 * Retention by dropping whole day partitions (ClickHouse 18.16 has no TTL).
 * Every data table is partitioned by toYYYYMMDD of its event date, so
 * "older than N days" is a partition id below toYYYYMMDD(today() - N),
 * computed by the server in its own time zone (the same one that named the
 * partitions). Today and the N days before it are kept.
 *
 * Partitions are listed from system.parts, which both versions have.
 */
import { type ClickHouseClient, clickHouseError, queryRows, quote } from './client.ts';
import { DATA_TABLES, DATABASE } from './schema.ts';

export interface PartitionInfo {
  table: string;
  /** The partition's value: the day as YYYYMMDD. */
  partition: string;
  rows: number;
  bytesOnDisk: number;
}

export interface RetentionResult {
  days: number;
  /** Partitions below this day (YYYYMMDD) are older than `days`. */
  cutoff: string;
  partitions: PartitionInfo[];
  /** False for a dry run: nothing was dropped. */
  executed: boolean;
}

const tableNames = DATA_TABLES.map((table) => table.slice(DATABASE.length + 1));

async function select<T>(client: ClickHouseClient, query: string, what: string): Promise<T[]> {
  try {
    return await queryRows<T>(client, query);
  } catch (error) {
    throw clickHouseError(error, what);
  }
}

/** The SQL that lists the data tables' active partitions, oldest first. */
export const PARTITIONS_SQL = `SELECT table, partition, sum(rows) AS rows, sum(bytes_on_disk) AS bytes
FROM system.parts
WHERE database = ${quote(DATABASE)} AND active AND table IN (${tableNames.map(quote).join(', ')})
GROUP BY table, partition
ORDER BY partition, table`;

/** The statement that drops one day of a table. */
export const dropPartitionSql = (table: string, partition: string) => `ALTER TABLE ${table} DROP PARTITION ${partition}`;

/** Active partitions of the data tables, oldest first. */
export async function listPartitions(client: ClickHouseClient): Promise<PartitionInfo[]> {
  const rows = await select<{ table: string; partition: string; rows: string; bytes: string }>(client, PARTITIONS_SQL, 'listing partitions');
  return rows.map((row) => ({ table: `${DATABASE}.${row.table}`, partition: row.partition, rows: Number(row.rows), bytesOnDisk: Number(row.bytes) }));
}

/**
 * Finds (and with `execute`, drops) the partitions older than `days` days.
 * A dry run by default: retention deletes data for good.
 */
export async function applyRetention(client: ClickHouseClient, options: { days: number; execute: boolean }): Promise<RetentionResult> {
  const { days, execute } = options;
  if (!Number.isSafeInteger(days) || days < 1) throw new RangeError(`days must be a whole number >= 1, got ${days}`);
  const [row] = await select<{ cutoff: string }>(client, `SELECT toString(toYYYYMMDD(today() - ${days})) AS cutoff`, 'computing the cutoff day');
  const cutoff = row!.cutoff;
  const old = (await listPartitions(client)).filter((p) => /^\d{8}$/.test(p.partition) && Number(p.partition) < Number(cutoff));
  if (execute) {
    for (const partition of old) {
      try {
        await client.command({ query: dropPartitionSql(partition.table, partition.partition) });
      } catch (error) {
        throw clickHouseError(error, `dropping partition ${partition.partition} of ${partition.table}`);
      }
    }
  }
  return { days, cutoff, partitions: old, executed: execute };
}

/**
 * Deletes every row of one pipeline (a decommissioned pipeline, or a test's or
 * benchmark's instance). An asynchronous mutation on both versions: the rows
 * disappear once ClickHouse has rewritten the parts that hold them.
 */
export async function deletePipelineRows(client: ClickHouseClient, pipeline: string): Promise<void> {
  for (const table of DATA_TABLES) {
    try {
      await client.command({ query: `ALTER TABLE ${table} DELETE WHERE pipeline = ${quote(pipeline)}` });
    } catch (error) {
      throw clickHouseError(error, `deleting the rows of ${pipeline} from ${table}`);
    }
  }
}
