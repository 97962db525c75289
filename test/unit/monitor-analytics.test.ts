/**
 * The monitor's documented queries (drift over time, data quality, alert
 * history) under the rules every documented query follows: docs/analytics.md
 * shows exactly the SQL the code runs, `sluice clickhouse query` finds them by
 * name, they take the pipeline and the days as their only parameters (bound as
 * literals for 18.16), name no pipeline, and use nothing that ClickHouse 18.16
 * or current ClickHouse rejects. test/integration/monitor-analytics.test.ts
 * runs them on the local 18.16.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DOCUMENTED_QUERIES, documentedQuery, MONITOR_QUERIES, QUERY_PARAMETERS, scopedSql } from '../../connectors/clickhouse/analytics.ts';
import { CHECKS } from '../../monitor/checks.ts';
import { NOT_ON_BOTH } from '../clickhouse-portability.ts';

const docs = readFileSync(new URL('../../docs/analytics.md', import.meta.url), 'utf8');

describe('the monitor\'s documented queries', () => {
  it('are drift over time, data quality and alert history, found by name like the others', () => {
    assert.deepEqual(MONITOR_QUERIES.map((q) => q.name), ['drift-over-time', 'data-quality', 'alert-history']);
    for (const query of MONITOR_QUERIES) assert.equal(documentedQuery(query.name), query);
    const names = [...DOCUMENTED_QUERIES, ...MONITOR_QUERIES].map((q) => q.name);
    assert.equal(new Set(names).size, names.length, 'no name is taken twice');
  });

  it('docs/analytics.md shows each exactly as the code runs it, in the monitoring section', () => {
    const section = docs.indexOf('## Monitoring: drift, data quality and alerts');
    assert.ok(section > 0, 'docs/analytics.md has the monitoring section');
    for (const query of MONITOR_QUERIES) {
      const heading = docs.indexOf(`(\`${query.name}\`)`, section);
      assert.ok(heading > section, `a heading for ${query.name}`);
      const block = /```sql\n([\s\S]*?)\n```/.exec(docs.slice(heading));
      assert.equal(block?.[1], query.sql, `the SQL of ${query.name} in the docs`);
    }
  });

  it('take the pipeline and the days, bound as literals', () => {
    for (const query of MONITOR_QUERIES) {
      assert.match(query.sql, /pipeline = \{pipeline:String\}/, query.name);
      assert.match(query.sql, /INTERVAL \{days:UInt32\} DAY/, query.name);
      assert.deepEqual(new Set(query.sql.match(/\{\w+:\w+\}/g)), new Set(Object.values(QUERY_PARAMETERS)), query.name);
      const scoped = scopedSql(query, { pipeline: 'signup-risk-it-1', days: 7 });
      assert.doesNotMatch(scoped, /\{\w+:\w+\}/);
      assert.match(scoped, /pipeline = 'signup-risk-it-1'/);
    }
  });

  it('name no pipeline, feature or reason: only the monitor\'s check kinds and statuses', () => {
    const allowed = new Set<string>([...CHECKS, 'breach', 'insufficient', 'null rate', 'null_rate', 'out_of_range']);
    for (const query of MONITOR_QUERIES) {
      for (const [, literal] of query.sql.matchAll(/'([^']*)'/g)) assert.ok(allowed.has(literal!), `${query.name} names '${literal}'`);
    }
  });

  it('use nothing ClickHouse 18.16 or current ClickHouse rejects, and never alias an aggregate with a column it reads', () => {
    for (const query of MONITOR_QUERIES) {
      const sql = scopedSql(query, { pipeline: 'p' });
      for (const [pattern, what] of NOT_ON_BOTH) assert.doesNotMatch(sql, pattern, `${query.name} uses ${what}`);
      for (const match of query.sql.matchAll(/(\w+)\((\w+)[^)]*\)\s+AS\s+(\w+)/g)) assert.notEqual(match[3], match[2], `${query.name}: ${match[0]}`);
    }
  });
});
