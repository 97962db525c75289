/**
 * The analytics schema on the real ClickHouse: migrations are idempotent and
 * recorded, the analyst user reads `sluice` and nothing else, and retention
 * drops day partitions older than N days (a dry run unless --execute).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOCUMENTED_QUERIES, runDocumentedQuery } from '../../connectors/clickhouse/analytics.ts';
import { type ClickHouseClient, clickHouseError, createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { ANALYST_DEFAULTS, hasSqlAccessControl, migrate, pendingMigrations, runMigrationStatement } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { addColumn, DATA_TABLES, MIGRATIONS, migrationChecksum, TABLES, type TableRows } from '../../connectors/clickhouse/schema.ts';
import { insertTableRows } from '../../connectors/clickhouse/writer.ts';
import { type ErrorCode, isSluiceError } from '../../lib/errors.ts';
import { connections, sluiceSync as sluice, uniqueName } from '../helpers.ts';

const DAY_MS = 86_400_000;


/** Rows in every table for one event at `atMs` (and its dead letter). */
function rowsAt(pipeline: string, eventId: string, atMs: number): TableRows {
  const coordinates = { kafka_partition: 0, kafka_offset: atMs % 1_000_000 };
  return {
    stageEvents: [
      {
        pipeline,
        stage: 'validate',
        outcome: 'passed',
        detail: '',
        event_id: eventId,
        decision_version: 0,
        occurred_at_ms: atMs,
        stage_at_ms: atMs + 5,
        kafka_topic: `${pipeline}.validated`,
        kafka_timestamp_ms: atMs + 5,
        ...coordinates,
      },
    ],
    modelOutputs: [
      {
        pipeline,
        event_id: eventId,
        model_version: 'm1',
        score: 0.5,
        label: '',
        class_names: [],
        class_scores: [],
        feature_names: ['f'],
        feature_values: [1],
        occurred_at_ms: atMs,
        scored_at_ms: atMs + 9,
        ...coordinates,
      },
    ],
    decisions: [
      {
        pipeline,
        event_id: eventId,
        decision: 'review',
        decided_by: 'model',
        reasons: [],
        score: 0.5,
        model_version: 'm1',
        policy_version: 'p1',
        decision_version: 1,
        occurred_at_ms: atMs,
        decided_at_ms: atMs + 12,
        extra_names: [],
        extra_values: [],
        ...coordinates,
      },
    ],
    deadLetters: [
      {
        pipeline,
        stage: 'validate',
        reason: 'SCHEMA_VIOLATION',
        message: 'payload.plan',
        event_id: `${eventId}-bad`,
        source_topic: `${pipeline}.raw`,
        source_partition: 0,
        source_offset: 1,
        failed_at_ms: atMs,
        size_bytes: 10,
        preview: '{}',
        kafka_timestamp_ms: atMs,
        ...coordinates,
      },
    ],
  };
}

async function rejectedWith(promise: Promise<unknown>, code: ErrorCode, what: string): Promise<void> {
  await assert.rejects(
    promise.catch((error) => {
      throw clickHouseError(error, what);
    }),
    (error) => {
      assert.ok(isSluiceError(error, code), `${what}: ${String(error)}`);
      return true;
    },
  );
}

describe('ClickHouse schema, analyst user and retention', () => {
  let admin: ClickHouseClient;
  let analyst: ClickHouseClient;
  const outside = `default.${uniqueName('it_outside').replaceAll('-', '_')}`;

  before(async () => {
    admin = createClickHouse({ url: connections.clickhouseUrl });
    analyst = createClickHouse({ url: connections.clickhouseUrl, username: ANALYST_DEFAULTS.user, password: ANALYST_DEFAULTS.password });
    await migrate(admin, { url: connections.clickhouseUrl });
  });

  after(async () => {
    await admin.command({ query: `DROP TABLE IF EXISTS ${outside}` }).catch(() => {});
    await analyst.close();
    await admin.close();
  });

  it('migrate is idempotent: a second run applies nothing and each version is recorded once, with its checksum', async () => {
    const again = await migrate(admin, { url: connections.clickhouseUrl });
    assert.deepEqual(again.applied, []);
    assert.deepEqual(
      again.alreadyApplied.map((m) => m.version),
      MIGRATIONS.map((m) => m.version),
    );
    assert.deepEqual(await pendingMigrations(admin), []);
    const recorded = await queryRows<{ version: number; n: string; checksum: string }>(
      admin,
      `SELECT version, count() AS n, any(checksum) AS checksum FROM ${TABLES.migrations} FINAL GROUP BY version ORDER BY version`,
    );
    assert.deepEqual(
      recorded.map((r) => [Number(r.version), Number(r.n), r.checksum]),
      MIGRATIONS.map((m) => [m.version, 1, migrationChecksum(m)]),
    );
  });

  it('takes a column addition that is already there as done (a migrate cut short, or two at once), unless its type differs', async () => {
    const table = `default.${uniqueName('it_add_column').replaceAll('-', '_')}`;
    await admin.command({ query: `CREATE TABLE ${table} (a String) ENGINE = MergeTree ORDER BY a` });
    try {
      const statement = addColumn({ table, column: 'class_names', type: 'Array(String)' }, 'a');
      await runMigrationStatement(admin, statement, 'adding a column');
      await runMigrationStatement(admin, statement, 'adding it again');
      const columns = await queryRows<{ name: string; type: string }>(admin, `SELECT name, type FROM system.columns WHERE database = 'default' AND table = ${quote(table.slice('default.'.length))}`);
      assert.deepEqual(columns.map((c) => [c.name, c.type]), [['a', 'String'], ['class_names', 'Array(String)']]);
      await assert.rejects(runMigrationStatement(admin, addColumn({ table, column: 'class_names', type: 'Array(Float64)' }, 'a'), 'adding it with another type'), (error) =>
        isSluiceError(error, 'CLICKHOUSE_SCHEMA_OUTDATED'),
      );
      await assert.rejects(runMigrationStatement(admin, `ALTER TABLE ${table} DROP COLUMN nothing_here`, 'a statement that fails'), (error) =>
        isSluiceError(error, 'CLICKHOUSE_QUERY_FAILED'),
      );
    } finally {
      await admin.command({ query: `DROP TABLE IF EXISTS ${table}` });
    }
  });

  it('creates the four tables with the columns of the contract, as ReplacingMergeTrees', async () => {
    const columns = await queryRows<{ table: string; name: string }>(admin, "SELECT table, name FROM system.columns WHERE database = 'sluice'");
    const of = (table: string) => new Set(columns.filter((c) => `sluice.${c.table}` === table).map((c) => c.name));
    const required: Record<string, string[]> = {
      [TABLES.stageEvents]: ['pipeline', 'stage', 'event_id', 'kafka_partition', 'kafka_offset', 'occurred_at', 'stage_at', 'outcome'],
      [TABLES.modelOutputs]: ['pipeline', 'event_id', 'model_version', 'score', 'label', 'class_names', 'class_scores', 'feature_names', 'feature_values', 'scored_at'],
      [TABLES.decisions]: [
        'event_id',
        'pipeline',
        'decision',
        'decided_by',
        'reasons',
        'score',
        'model_version',
        'policy_version',
        'decision_version',
        'occurred_at',
        'decided_at',
        'extra_names',
        'extra_values',
      ],
      [TABLES.deadLetters]: ['pipeline', 'stage', 'reason', 'message', 'source_topic', 'source_partition', 'source_offset', 'failed_at', 'size_bytes', 'preview'],
    };
    for (const [table, names] of Object.entries(required)) {
      for (const name of names) assert.ok(of(table).has(name), `${table}.${name}`);
    }
    const engines = await queryRows<{ name: string; engine: string }>(
      admin,
      "SELECT name, engine FROM system.tables WHERE database = 'sluice' AND name != 'schema_migrations' ORDER BY name",
    );
    assert.deepEqual(
      engines.map((t) => [t.name, t.engine]),
      [...DATA_TABLES, TABLES.monitorWindows, TABLES.alerts, TABLES.labels].map((t) => t.slice('sluice.'.length)).sort().map((name) => [name, 'ReplacingMergeTree']),
    );
  });

  it('lets the analyst user run every documented query, and nothing that writes', async () => {
    for (const query of DOCUMENTED_QUERIES) await runDocumentedQuery(analyst, query.name, { pipeline: uniqueName('signup-risk-it') });
    const row = rowsAt('it-analyst', 'e-1', Date.now()).decisions;
    await rejectedWith(analyst.insert({ table: TABLES.decisions, format: 'JSONEachRow', values: row }), 'CLICKHOUSE_ACCESS_DENIED', 'an analyst insert');
    await rejectedWith(analyst.command({ query: 'CREATE TABLE sluice.analyst_made (x UInt8) ENGINE = Memory' }), 'CLICKHOUSE_ACCESS_DENIED', 'an analyst CREATE');
    await rejectedWith(analyst.command({ query: `DROP TABLE ${TABLES.decisions}` }), 'CLICKHOUSE_ACCESS_DENIED', 'an analyst DROP');
    await rejectedWith(analyst.command({ query: `ALTER TABLE ${TABLES.decisions} DROP PARTITION 20200101` }), 'CLICKHOUSE_ACCESS_DENIED', 'an analyst ALTER');
    const tables = await queryRows<{ n: string }>(admin, "SELECT count() AS n FROM system.tables WHERE database = 'sluice' AND name = 'analyst_made'");
    assert.equal(Number(tables[0]?.n), 0);
  });

  it('keeps the analyst user out of every database but sluice', async () => {
    await admin.command({ query: `CREATE TABLE ${outside} (secret String) ENGINE = MergeTree ORDER BY secret` });
    await admin.insert({ table: outside, format: 'JSONEachRow', values: [{ secret: 'not for analysts' }] });
    await rejectedWith(queryRows(analyst, `SELECT * FROM ${outside}`), 'CLICKHOUSE_ACCESS_DENIED', 'an analyst read of default');
    // Nor through a table function (18.16: forbidden for readonly users; current: needs grants the analyst lacks).
    await rejectedWith(queryRows(analyst, `SELECT * FROM merge('default', '.*')`), 'CLICKHOUSE_ACCESS_DENIED', 'an analyst merge()');
    await rejectedWith(queryRows(analyst, `SELECT * FROM remote('127.0.0.1', ${outside})`), 'CLICKHOUSE_ACCESS_DENIED', 'an analyst remote()');
    // Listing another database shows nothing (or is refused).
    const listed = await queryRows<{ name: string }>(analyst, 'SHOW TABLES FROM default').catch(() => []);
    assert.ok(!listed.some((t) => outside.endsWith(t.name)), 'no table of default listed');
    if (await hasSqlAccessControl(admin)) {
      // Current ClickHouse: system tables show the analyst only what it may see.
      const visible = await queryRows<{ name: string }>(analyst, `SELECT name FROM system.tables WHERE database = 'default'`);
      assert.deepEqual(visible, []);
    }
  });

  it('retention lists the partitions older than N days (dry run), drops them only with --execute, and keeps the rest', async () => {
    const pipeline = uniqueName('it-retention');
    const old = Date.now() - 1_000 * DAY_MS;
    await insertTableRows(admin, rowsAt(pipeline, 'old', old));
    await insertTableRows(admin, rowsAt(pipeline, 'new', Date.now()));
    const count = async (table: string) => {
      const [row] = await queryRows<{ n: string }>(admin, `SELECT count() AS n FROM ${table} WHERE pipeline = ${quote(pipeline)}`);
      return Number(row?.n);
    };
    const day = new Date(old).toISOString().slice(0, 10).replaceAll('-', '');

    const dry = sluice(['clickhouse', 'retention', '--days', '999', '--json']);
    assert.equal(dry.status, 0, dry.stderr);
    const listed = JSON.parse(dry.stdout) as { executed: boolean; partitions: Array<{ table: string; partition: string; rows: number }> };
    assert.equal(listed.executed, false);
    for (const table of DATA_TABLES) {
      assert.ok(listed.partitions.some((p) => p.table === table && p.partition === day && p.rows >= 1), `${table} ${day} listed`);
      assert.equal(await count(table), 2, `${table}: a dry run drops nothing`);
    }

    const run = sluice(['clickhouse', 'retention', '--days', '999', '--execute']);
    assert.equal(run.status, 0, run.stderr);
    for (const table of DATA_TABLES) {
      assert.match(run.stdout, new RegExp(`dropped\\s+${table.replace('.', '\\.')}\\s+partition ${day}`));
      assert.equal(await count(table), 1, `${table}: the old row is gone, today's stays`);
    }
    const again = sluice(['clickhouse', 'retention', '--days', '999', '--json']);
    assert.ok(!(JSON.parse(again.stdout) as typeof listed).partitions.some((p) => p.partition === day), 'nothing left to drop for that day');
    await deletePipelineRows(admin, pipeline);
  });

  it('refuses a retention of less than one day', () => {
    const result = sluice(['clickhouse', 'retention', '--days', '0']);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /CONFIG_INVALID/);
  });
});
