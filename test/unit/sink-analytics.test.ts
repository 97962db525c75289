import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DOCUMENTED_QUERIES, documentedQuery, formatRows, QUERY_PARAMETERS, type QueryScope, runDocumentedQuery, scopedSql } from '../../connectors/clickhouse/analytics.ts';
import type { ClickHouseClient } from '../../connectors/clickhouse/client.ts';
import { BOOTSTRAP_STATEMENTS, columnAddition, MIGRATIONS, migrationChecksum, TABLES } from '../../connectors/clickhouse/schema.ts';
import { isSluiceError } from '../../lib/errors.ts';
import { NOT_ON_BOTH } from '../clickhouse-portability.ts';

const docs = readFileSync(new URL('../../docs/analytics.md', import.meta.url), 'utf8');

describe('documented analyst queries', () => {
  it('has 8 to 24 queries with unique names, covering what the issue asks for', () => {
    assert.ok(DOCUMENTED_QUERIES.length >= 8 && DOCUMENTED_QUERIES.length <= 24);
    assert.equal(new Set(DOCUMENTED_QUERIES.map((q) => q.name)).size, DOCUMENTED_QUERIES.length);
    const names = ['decision-mix', 'stage-latency', 'dead-letter-reasons', 'score-distribution', 'feature-stats', 'loss-check', 'review-rate', 'slowest-events'];
    const review = ['realized-performance', 'review-volume', 'review-time', 'reviewer-agreement'];
    for (const name of [...names, 'class-distribution', 'decision-fields', ...review]) {
      assert.equal(documentedQuery(name).name, name);
    }
  });

  it('docs/analytics.md shows each query exactly as the code runs it', () => {
    for (const query of DOCUMENTED_QUERIES) {
      const heading = docs.indexOf(`(\`${query.name}\`)`);
      assert.ok(heading > 0, `a heading for ${query.name}`);
      const block = /```sql\n([\s\S]*?)\n```/.exec(docs.slice(heading));
      assert.equal(block?.[1], query.sql, `the SQL of ${query.name} in the docs`);
    }
  });

  it('every query takes the pipeline and the window as parameters, bound as literals for any server', () => {
    for (const query of DOCUMENTED_QUERIES) {
      assert.match(query.sql, /pipeline = \{pipeline:String\}/, query.name);
      assert.match(query.sql, /INTERVAL \{days:UInt32\} DAY/, query.name);
      const parameters = new Set(query.sql.match(/\{\w+:\w+\}/g));
      assert.deepEqual(parameters, new Set(Object.values(QUERY_PARAMETERS)), `${query.name} takes exactly the documented parameters`);
      const scoped = scopedSql(query, { pipeline: 'ticket-triage-it-1', days: 7 });
      assert.doesNotMatch(scoped, /\{\w+:\w+\}/, query.name);
      assert.match(scoped, /pipeline = 'ticket-triage-it-1'/);
      assert.match(scoped, /INTERVAL 7 DAY/);
      assert.match(scopedSql(query, { pipeline: 'p' }), /INTERVAL 1 DAY/, 'one day unless told');
    }
  });

  it('no query is written for one pipeline: no pipeline name, no decision but review, no feature or class by name', () => {
    for (const query of DOCUMENTED_QUERIES) {
      const literals = [...query.sql.matchAll(/'([^']*)'/g)].map((match) => match[1]);
      // The review queries also name contract values every pipeline shares: decided_by fallback, review_reason review_expired, and a separator.
      const allowed = new Set(['passed', 'dead_lettered', 'validate', 'score', 'decide', 'end_to_end', 'none', 'human', 'review', 'fallback', 'review_expired', '', ',']);
      for (const literal of literals) assert.ok(allowed.has(literal!), `${query.name} names '${literal}'`);
    }
  });

  it('refuses a pipeline name or window that is not plain, no pipeline at all, and an unknown query', () => {
    const query = DOCUMENTED_QUERIES[0]!;
    const scopes: QueryScope[] = [{ pipeline: "x' OR 1 = 1 --" }, { pipeline: '' }, { pipeline: 'p', days: 0 }, { pipeline: 'p', days: 1.5 }, {} as QueryScope];
    for (const scope of scopes) {
      assert.throws(() => scopedSql(query, scope), (error) => isSluiceError(error, 'CONFIG_INVALID'), JSON.stringify(scope));
    }
    assert.throws(() => documentedQuery('drop-everything'), (error) => isSluiceError(error, 'QUERY_UNKNOWN'));
    assert.throws(() => scopedSql({ ...query, sql: `${query.sql} AND x = {x:String}` }, { pipeline: 'p' }), (error) => isSluiceError(error, 'QUERY_UNKNOWN'));
  });

  it('refuses a bad pipeline name as bad input before asking ClickHouse, not as an outage to retry', async () => {
    const unreachable = {} as ClickHouseClient;
    await assert.rejects(runDocumentedQuery(unreachable, 'loss-check', { pipeline: "x'y" }), (error) => isSluiceError(error, 'CONFIG_INVALID'));
  });

  it('uses nothing that ClickHouse 18.16 or current ClickHouse would reject, in queries and migrations', () => {
    const statements = [
      ...DOCUMENTED_QUERIES.map((q) => [q.name, scopedSql(q, { pipeline: 'p' })]),
      ...[...BOOTSTRAP_STATEMENTS, ...MIGRATIONS.flatMap((m) => m.statements)].map((s) => ['migration', s]),
    ];
    for (const [name, sql] of statements) {
      for (const [pattern, what] of NOT_ON_BOTH) assert.doesNotMatch(sql!, pattern, `${name} uses ${what}`);
    }
  });

  it('never aliases an aggregate with the name of a column it reads (18.16 rejects it)', () => {
    for (const query of DOCUMENTED_QUERIES) {
      for (const match of query.sql.matchAll(/(\w+)\((\w+)[^)]*\)\s+AS\s+(\w+)/g)) {
        assert.notEqual(match[3], match[2], `${query.name}: ${match[0]}`);
      }
    }
  });

  it('never changes an applied migration: each checksum is pinned here, as servers recorded it', () => {
    // A new migration adds its line; changing a line means an applied migration was edited, which migrate refuses.
    assert.deepEqual(
      MIGRATIONS.map((m) => [m.version, migrationChecksum(m)]),
      [
        [1, 'e6d3b8dccb35d144'],
        [2, '1a87233b4bacf77a'],
        [3, '75720343967098e1'],
        [4, 'e72f46ed76afcd97'],
        [5, '07bc0a54663ecda3'],
        [6, 'f13a03ca87ceda3c'],
        [7, '9884295ff00c29f1'],
      ],
    );
  });

  it('adds columns one per statement, in the form migrate can recognise as already done', () => {
    const additions = MIGRATIONS.flatMap((m) => m.statements).flatMap((statement) => columnAddition(statement) ?? []);
    assert.deepEqual(
      additions.map((a) => [a.table, a.column, a.type]),
      [
        [TABLES.modelOutputs, 'label', 'String'],
        [TABLES.modelOutputs, 'class_names', 'Array(String)'],
        [TABLES.modelOutputs, 'class_scores', 'Array(Float64)'],
        [TABLES.decisions, 'extra_names', 'Array(String)'],
        [TABLES.decisions, 'extra_values', 'Array(String)'],
        [TABLES.decisions, 'replay_id', 'String'],
        [TABLES.decisions, 'shadow_model_version', 'String'],
        [TABLES.decisions, 'shadow_score', 'Float64'],
        [TABLES.decisions, 'shadow_decision', 'String'],
        [TABLES.decisions, 'reviewed_by', 'String'],
        [TABLES.decisions, 'review_reason', 'String'],
        [TABLES.decisions, 'corrects_decision_version', 'UInt32'],
        [TABLES.stageEvents, 'timeliness', 'String'],
      ],
    );
    assert.equal(columnAddition(MIGRATIONS[0]!.statements[0]!), undefined);
  });

  it('migrations have increasing versions and stable checksums', () => {
    const versions = MIGRATIONS.map((m) => m.version);
    assert.deepEqual(versions, [...versions].sort((a, b) => a - b));
    assert.equal(new Set(versions).size, versions.length);
    for (const migration of MIGRATIONS) {
      assert.equal(migrationChecksum(migration), migrationChecksum({ ...migration }));
      assert.notEqual(migrationChecksum(migration), migrationChecksum({ ...migration, statements: [...migration.statements, 'SELECT 1'] }));
    }
  });

  it('formats rows as an aligned table', () => {
    assert.equal(formatRows([]), '(no rows)\n');
    assert.equal(formatRows([{ hour: '2026-11-28 10:00:00', events: '12' }, { hour: '2026-11-28 11:00:00', events: '7' }]), 'hour                 events\n2026-11-28 10:00:00  12\n2026-11-28 11:00:00  7\n');
  });
});
