import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DOCUMENTED_QUERIES, documentedQuery, formatRows, scopedSql } from '../../connectors/clickhouse/analytics.ts';
import { BOOTSTRAP_STATEMENTS, MIGRATIONS, migrationChecksum } from '../../connectors/clickhouse/schema.ts';
import { isSluiceError } from '../../lib/errors.ts';

const docs = readFileSync(new URL('../../docs/analytics.md', import.meta.url), 'utf8');

/** Constructs one of the two ClickHouse versions rejects (PRODUCT.md): 18.16 and current must both run everything. */
const NOT_ON_BOTH = [
  [/DateTime64/, 'DateTime64'],
  [/\bMap\(/, 'Map'],
  [/LowCardinality/, 'LowCardinality'],
  [/\bTTL\b/, 'TTL'],
  [/\bOVER\s*\(/i, 'window functions'],
  [/toStartOfInterval/, 'toStartOfInterval'],
  [/\{\w+:\w+\}/, 'query parameters'],
  [/CREATE USER/i, 'CREATE USER (18.16 has no SQL user management)'],
  [/ADD COLUMN IF NOT EXISTS/i, 'ADD COLUMN IF NOT EXISTS (not on 18.16)'],
] as const;

describe('documented analyst queries', () => {
  it('has 8 to 12 queries with unique names, covering what the issue asks for', () => {
    assert.ok(DOCUMENTED_QUERIES.length >= 8 && DOCUMENTED_QUERIES.length <= 12);
    assert.equal(new Set(DOCUMENTED_QUERIES.map((q) => q.name)).size, DOCUMENTED_QUERIES.length);
    for (const name of ['decision-mix', 'stage-latency', 'dead-letter-reasons', 'score-distribution', 'feature-stats', 'loss-check', 'review-rate', 'slowest-events']) {
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

  it('every query reads one pipeline over a window, so the API can scope it', () => {
    for (const query of DOCUMENTED_QUERIES) {
      assert.match(query.sql, /pipeline = 'signup-risk'/, query.name);
      assert.match(query.sql, /INTERVAL 1 DAY/, query.name);
      const scoped = scopedSql(query, { pipeline: 'signup-risk-it-1', days: 7 });
      assert.doesNotMatch(scoped, /'signup-risk'|INTERVAL 1 DAY/, query.name);
      assert.match(scoped, /pipeline = 'signup-risk-it-1'/);
      assert.match(scoped, /INTERVAL 7 DAY/);
    }
  });

  it('refuses a pipeline name or window that is not plain, and an unknown query', () => {
    const query = DOCUMENTED_QUERIES[0]!;
    for (const scope of [{ pipeline: "x' OR 1 = 1 --" }, { days: 0 }, { days: 1.5 }]) {
      assert.throws(() => scopedSql(query, scope), (error) => isSluiceError(error, 'CONFIG_INVALID'));
    }
    assert.throws(() => documentedQuery('drop-everything'), (error) => isSluiceError(error, 'QUERY_UNKNOWN'));
  });

  it('uses nothing that ClickHouse 18.16 or current ClickHouse would reject, in queries and migrations', () => {
    const statements = [...DOCUMENTED_QUERIES.map((q) => [q.name, q.sql]), ...[...BOOTSTRAP_STATEMENTS, ...MIGRATIONS.flatMap((m) => m.statements)].map((s) => ['migration', s])];
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
