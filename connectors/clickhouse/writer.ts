/** Batched inserts for the sink: one JSONEachRow insert per table and batch (ClickHouse wants few, large inserts). */
import { type ClickHouseClient, clickHouseError } from './client.ts';
import { TABLE_OF, type TableRows } from './schema.ts';

export interface InsertReport {
  table: string;
  rows: number;
  durationMs: number;
}

/**
 * Inserts every table's rows, the tables in parallel. Throws a classified
 * SluiceError if any insert fails; the caller retries the whole batch, which
 * is safe because every table collapses a row inserted twice.
 */
export async function insertTableRows(client: ClickHouseClient, rows: TableRows): Promise<InsertReport[]> {
  const entries = (Object.keys(TABLE_OF) as Array<keyof TableRows>).filter((key) => rows[key].length > 0);
  return Promise.all(
    entries.map(async (key) => {
      const table = TABLE_OF[key];
      const started = performance.now();
      try {
        await client.insert({ table, format: 'JSONEachRow', values: rows[key] as unknown as Array<Record<string, unknown>> });
      } catch (error) {
        throw clickHouseError(error, `inserting ${rows[key].length} rows into ${table}`);
      }
      return { table, rows: rows[key].length, durationMs: performance.now() - started };
    }),
  );
}
