/**
 * The same SQL on both ClickHouse versions sluice supports: the local stack's
 * 18.16 server, and current ClickHouse through chDB (the in-process build of
 * the same engine, a Python package). The migrations, the sink's rows of a
 * binary and a multiclass pipeline (inserted twice, as an at-least-once sink
 * may), every documented query and the retention statements run on both, and
 * the query results must agree; on current ClickHouse the documented text also
 * runs with ClickHouse's own query parameters, with the same results.
 *
 * chDB is not part of the stack: point SLUICE_CHDB_PYTHON at a Python that can
 * `import chdb` (pip install chdb-core), or have python3 able to. Without it
 * this test is skipped, saying so.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DOCUMENTED_QUERIES, MONITOR_QUERIES, type QueryRow, runDocumentedQuery, scopedSql } from '../../connectors/clickhouse/analytics.ts';
import { createClickHouse, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows, dropPartitionSql, PARTITIONS_SQL } from '../../connectors/clickhouse/retention.ts';
import { BOOTSTRAP_STATEMENTS, type DecisionRow, MIGRATIONS, TABLE_OF, TABLES, type TableRows } from '../../connectors/clickhouse/schema.ts';
import { insertTableRows } from '../../connectors/clickhouse/writer.ts';
import { insertLabels, type LabelRow } from '../../processors/sink/labels.ts';
import { emptyRows } from '../../processors/sink/rows.ts';
import { connections, uniqueName } from '../helpers.ts';

const python = process.env.SLUICE_CHDB_PYTHON ?? 'python3';
const probe = spawnSync(python, ['-c', 'import chdb; print(chdb.query("SELECT version()", "CSV"))'], { encoding: 'utf8' });
const chdbVersion = probe.status === 0 ? probe.stdout.trim().replaceAll('"', '') : undefined;
const skip = chdbVersion === undefined ? `no Python with chdb (${python}); set SLUICE_CHDB_PYTHON` : false;

/** Runs statements, inserts and queries in a fresh chDB session; prints each query's rows as JSON. */
const CHDB_SCRIPT = `
import json, sys
from chdb import session
job = json.load(open(sys.argv[1]))
s = session.Session(sys.argv[2])
for statement in job['statements']:
    s.query(statement)
for insert in job['inserts']:
    s.query('INSERT INTO %s FORMAT JSONEachRow %s' % (insert['table'], '\\n'.join(json.dumps(r) for r in insert['rows'])))
out = {}
for name, query in job['queries'].items():
    text = str(s.query(query['sql'], 'JSONEachRow', params=query.get('params'))).strip()
    out[name] = [json.loads(line) for line in text.split('\\n') if line]
for statement in job['after']:
    s.query(statement)
out['__partitions_after'] = [json.loads(line) for line in str(s.query(job['partitions'], 'JSONEachRow')).strip().split('\\n') if line]
print(json.dumps(out))
`;

/** Rows of a small but varied binary-model run: latencies, scores, features, a reviewer's second decision, dead letters with and without ids. */
/** A challenger's shadow score and the decision the policy would make on it. */
const shadowOf = (score: number) => ({ shadow_model_version: 'm3', shadow_score: score, shadow_decision: score >= 0.9 ? 'block' : score >= 0.5 ? 'review' : 'approve' });

const HOUR_MS = 3_600_000;

/**
 * The sample's `now`: the middle of the latest hour whose middle has passed
 * (0 to 60 minutes ago). Its rows lie within about a minute either side, and
 * the review queries count per hour: rows around the top of an hour would be
 * split between two.
 */
const sampleNow = (): number => Math.floor((Date.now() - HOUR_MS / 2) / HOUR_MS) * HOUR_MS + HOUR_MS / 2;

/** When sample event `e-<i>` occurred: the last minute before `now`, every half second. */
const occurredAt = (now: number, i: number) => now - 60_000 + i * 500;

function sampleRows(pipeline: string, now: number): TableRows {
  const rows = emptyRows();
  for (let i = 0; i < 60; i++) {
    const eventId = `e-${i}`;
    const occurred = occurredAt(now, i);
    const coords = (topic: string) => ({ kafka_topic: `${pipeline}.${topic}`, kafka_partition: i % 3, kafka_offset: i, kafka_timestamp_ms: occurred + 100 });
    const stage = (name: string, at: number, detail = '', version = 0) => ({
      pipeline,
      stage: name,
      outcome: 'passed' as const,
      detail,
      event_id: eventId,
      decision_version: version,
      occurred_at_ms: occurred,
      stage_at_ms: at,
    });
    rows.stageEvents.push({ ...stage('validate', occurred + 3 + (i % 7)), ...coords('validated') });
    if (i % 15 === 14) continue; // still in flight: validated only
    const score = ((i * 37) % 100) / 100;
    const decision = score >= 0.9 ? 'block' : score >= 0.5 ? 'review' : 'approve';
    rows.stageEvents.push({ ...stage('score', occurred + 20 + (i % 11)), ...coords('scored') });
    rows.modelOutputs.push({
      pipeline,
      event_id: eventId,
      model_version: i < 30 ? 'm1' : 'm2',
      score,
      label: '',
      class_names: [],
      class_scores: [],
      feature_names: ['age_log1p', 'ip_signups', 'plan_free'],
      feature_values: [i / 7, (i * 3) % 5, i % 2],
      occurred_at_ms: occurred,
      scored_at_ms: occurred + 20 + (i % 11),
      kafka_partition: i % 3,
      kafka_offset: i,
    });
    rows.stageEvents.push({ ...stage('decide', occurred + 40 + i, decision, 1), ...coords('decided') });
    const decisionRow = {
      pipeline,
      event_id: eventId,
      decision,
      decided_by: 'model',
      reasons: [`score ${score}`],
      score,
      model_version: i < 30 ? 'm1' : 'm2',
      policy_version: 'p1',
      decision_version: 1,
      occurred_at_ms: occurred,
      decided_at_ms: occurred + 40 + i,
      extra_names: [],
      extra_values: [],
      kafka_partition: i % 3,
      kafka_offset: i,
      // A challenger scored in shadow beside m2, so shadow-comparison has something to compare.
      ...(i >= 30 ? shadowOf(((i * 53) % 100) / 100) : {}),
    };
    rows.decisions.push(decisionRow);
    if (decision === 'review' && i % 2 === 0) {
      // A reviewer's correction: version 2, no model.
      rows.decisions.push({ ...decisionRow, decision: 'approve', decided_by: 'human', score: null, model_version: null, decision_version: 2, decided_at_ms: now, kafka_offset: 1_000 + i });
      rows.stageEvents.push({ ...stage('decide', now, 'approve', 2), ...coords('decided'), kafka_offset: 1_000 + i });
    }
  }
  for (let i = 0; i < 5; i++) {
    const failed = now - 30_000 + i * 1_000;
    const eventId = i < 3 ? `bad-${i}` : '';
    rows.deadLetters.push({
      pipeline,
      stage: i === 4 ? 'score' : 'validate',
      reason: i === 4 ? 'SCORING_FAILED' : i % 2 ? 'MALFORMED_PAYLOAD' : 'SCHEMA_VIOLATION',
      message: `detail ${i}`,
      event_id: eventId,
      source_topic: `${pipeline}.raw`,
      source_partition: 0,
      source_offset: 100 + i,
      failed_at_ms: failed,
      size_bytes: 40 + i,
      preview: `{"n":${i}}`,
      kafka_partition: 0,
      kafka_offset: i,
      kafka_timestamp_ms: failed,
    });
    rows.stageEvents.push({
      pipeline,
      stage: i === 4 ? 'score' : 'validate',
      outcome: 'dead_lettered',
      detail: 'x',
      event_id: eventId,
      decision_version: 0,
      occurred_at_ms: failed,
      stage_at_ms: failed,
      kafka_topic: `${pipeline}.dlq`,
      kafka_partition: 0,
      kafka_offset: i,
      kafka_timestamp_ms: failed,
    });
  }
  return rows;
}

const CLASSES = ['billing', 'bug', 'security', 'account', 'feature_request'];
const PRIORITIES = ['P1', 'P2', 'P3', 'P4'];

/**
 * Rows of a multiclass run whose decisions carry fields of their own (queue,
 * priority): class probabilities, labels, two model versions, a reviewer
 * re-routing some events, on top of the binary run's stage events and dead letters.
 */
function multiclassRows(pipeline: string, now: number): TableRows {
  const rows = sampleRows(pipeline, now);
  rows.modelOutputs = rows.modelOutputs.map((row, i) => {
    const raw = CLASSES.map((_, c) => 1 + ((i * (c + 3)) % 7));
    const total = raw.reduce((a, b) => a + b, 0);
    const probs = raw.map((r) => r / total);
    const top = probs.indexOf(Math.max(...probs));
    return { ...row, score: probs[top]!, label: CLASSES[top]!, class_names: CLASSES, class_scores: probs, feature_names: ['text_chars', 'text_tokens'], feature_values: [40 + i, 8 + (i % 5)] };
  });
  const labelOf = new Map(rows.modelOutputs.map((row) => [row.event_id, row.label]));
  rows.decisions = rows.decisions.map((row, i) => {
    const queue = row.decided_by === 'human' ? 'security' : (labelOf.get(row.event_id) ?? 'bug');
    const decision = row.decided_by === 'human' ? 'route' : row.decision === 'approve' ? 'route' : 'review';
    return { ...row, decision, extra_names: ['queue', 'priority'], extra_values: [queue, PRIORITIES[i % 4]!] };
  });
  return rows;
}

/**
 * Reviewers' labels over a run's events (the labels table, migration 6): audits
 * confirmed and overridden, review items resolved, one event labeled by two
 * reviewers who disagree and one by two who agree; and review items that
 * expired (fallback decisions with review_reason review_expired).
 */
function sampleLabels(pipeline: string, now: number, multiclass: boolean): { labels: LabelRow[]; expired: DecisionRow[] } {
  const labels: LabelRow[] = [];
  for (let i = 0; i < 24; i++) {
    const audit = i % 3 !== 0;
    const original = audit ? (i % 4 === 0 ? 'block' : multiclass ? 'route' : 'approve') : 'review';
    const changed = !audit || i % 5 === 0;
    const label = multiclass ? 'route' : changed ? (original === 'approve' ? 'block' : 'approve') : original;
    const created = now - 50_000 + i * 1_000;
    const row: LabelRow = {
      pipeline,
      event_id: `e-${i}`,
      item_id: `item-${i}`,
      kind: audit ? 'audit' : 'review',
      label,
      label_field_names: multiclass ? ['priority', 'queue'] : [],
      label_field_values: multiclass ? [`P${1 + (i % 4)}`, changed ? 'security' : 'bug'] : [],
      reviewer: `reviewer-${i % 3}`,
      reason: `reason ${i}`,
      original_decision: original,
      original_decided_by: 'model',
      original_decision_version: 1,
      decision_version: changed ? 2 : 1,
      score: i % 7 === 0 ? null : (i * 13) % 100 / 100,
      model_version: i < 12 ? 'm1' : 'm2',
      policy_version: 'p1',
      occurred_at_ms: created - 500,
      created_at_ms: created,
      labeled_at_ms: created + 2_000 + i * 750,
      kafka_partition: i % 3,
      kafka_offset: i,
    };
    labels.push(row);
    // Events 0 and 3 are labeled again by a second reviewer: agreeing on e-0, not on e-3.
    if (i === 0 || i === 3) labels.push({ ...row, reviewer: 'second-opinion', label: i === 0 ? row.label : 'block', labeled_at_ms: row.labeled_at_ms + 60_000, kafka_offset: 100 + i });
  }
  // e-5 and e-7 went to review and no reviewer corrected them (sampleRows): they expire.
  const expired = [5, 7].map((n) => {
    const decision: DecisionRow & { review_reason: string; corrects_decision_version: number } = {
      pipeline,
      event_id: `e-${n}`,
      decision: 'review',
      decided_by: 'fallback',
      reasons: ['review_expired'],
      score: 0.6,
      model_version: 'm2',
      policy_version: 'p1',
      decision_version: 2,
      // The event's own occurrence, as the review service copies it: with another
      // time, an hour that began between the two would split the event's rows and
      // any(occurred_at) would pick either hour, one engine one, the other the other.
      occurred_at_ms: occurredAt(now, n),
      decided_at_ms: now - 1_000,
      extra_names: [],
      extra_values: [],
      review_reason: 'review_expired',
      corrects_decision_version: 1,
      kafka_partition: 0,
      kafka_offset: 2_000 + n,
    };
    return decision;
  });
  return { labels, expired };
}

/** 64-bit integers are strings from 18.16 and numbers from current ClickHouse; floats may differ in their last bits. */
const normalize = (rows: QueryRow[]) =>
  rows.map((row) =>
    Object.fromEntries(
      Object.entries(row).map(([key, value]) => {
        const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
        return [key, typeof n === 'number' && !Number.isInteger(n) ? Number(n.toPrecision(12)) : n];
      }),
    ),
  );

describe('ClickHouse 18.16 and current ClickHouse agree', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-chdb-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it(`runs the migrations, the sink's rows (twice), every documented query and retention alike on 18.16 and ${chdbVersion ?? 'chDB'}`, async () => {
    const now = sampleNow();
    const binary = uniqueName('it-versions-binary');
    const multiclass = uniqueName('it-versions-multiclass');
    const rows = [sampleRows(binary, now), multiclassRows(multiclass, now)];
    const pipelines = [binary, multiclass];
    const reviewed = [sampleLabels(binary, now, false), sampleLabels(multiclass, now, true)];
    for (const [i, { expired }] of reviewed.entries()) rows[i]!.decisions.push(...expired);
    const client = createClickHouse({ url: connections.clickhouseUrl });
    const local: Record<string, QueryRow[]> = {};
    try {
      await migrate(client, { url: connections.clickhouseUrl });
      for (const batch of rows) {
        await insertTableRows(client, batch);
        await insertTableRows(client, batch); // the at-least-once repeat
      }
      for (const { labels } of reviewed) for (const _ of [1, 2]) await insertLabels(client, labels);
      for (const pipeline of pipelines) {
        for (const query of [...DOCUMENTED_QUERIES, ...MONITOR_QUERIES]) local[`${pipeline} ${query.name}`] = await runDocumentedQuery(client, query.name, { pipeline });
      }
    } finally {
      for (const pipeline of pipelines) await deletePipelineRows(client, pipeline).catch(() => {});
      for (const pipeline of pipelines) await client.command({ query: `ALTER TABLE ${TABLES.labels} DELETE WHERE pipeline = ${quote(pipeline)}` }).catch(() => {});
      await client.close();
    }

    const queries: Record<string, { sql: string; params?: Record<string, unknown> }> = {};
    for (const pipeline of pipelines) {
      for (const query of [...DOCUMENTED_QUERIES, ...MONITOR_QUERIES]) {
        queries[`${pipeline} ${query.name}`] = { sql: scopedSql(query, { pipeline }) };
        queries[`${pipeline} ${query.name} (query parameters)`] = { sql: query.sql, params: { pipeline, days: 1 } };
      }
    }
    const job = {
      statements: [...BOOTSTRAP_STATEMENTS, ...MIGRATIONS.flatMap((m) => m.statements)],
      inserts: [
        ...rows.flatMap((batch) => [1, 2].flatMap(() => (Object.keys(TABLE_OF) as Array<keyof TableRows>).map((key) => ({ table: TABLE_OF[key], rows: batch[key] })))),
        ...reviewed.flatMap(({ labels }) => [1, 2].map(() => ({ table: TABLES.labels, rows: labels }))),
      ],
      queries,
      after: [dropPartitionSql(TABLE_OF.deadLetters, new Date(now).toISOString().slice(0, 10).replaceAll('-', ''))],
      partitions: PARTITIONS_SQL,
    };
    writeFileSync(join(dir, 'job.json'), JSON.stringify(job));
    const run = spawnSync(python, ['-c', CHDB_SCRIPT, join(dir, 'job.json'), join(dir, 'data')], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    assert.equal(run.status, 0, run.stderr);
    const current = JSON.parse(run.stdout) as Record<string, QueryRow[]>;

    // The monitor's queries (over what sluice monitor writes; none here): the same SQL runs on both.
    for (const query of MONITOR_QUERIES) {
      for (const pipeline of pipelines) {
        const name = `${pipeline} ${query.name}`;
        assert.deepEqual(normalize(current[name]!), normalize(local[name]!), `${name}: same result on both versions`);
        assert.deepEqual(normalize(current[`${name} (query parameters)`]!), normalize(local[name]!), `${name}: same with query parameters`);
      }
    }

    for (const query of DOCUMENTED_QUERIES) {
      assert.ok(pipelines.some((pipeline) => local[`${pipeline} ${query.name}`]!.length > 0), `${query.name} returns rows`);
      for (const pipeline of pipelines) {
        const name = `${pipeline} ${query.name}`;
        assert.deepEqual(normalize(current[name]!), normalize(local[name]!), `${name}: same result on both versions`);
        assert.deepEqual(normalize(current[`${name} (query parameters)`]!), normalize(local[name]!), `${name}: same result with ClickHouse's own query parameters`);
      }
    }
    // The review queries count what the labels say (sampleLabels), written twice or not.
    for (const [i, pipeline] of pipelines.entries()) {
      const { labels } = reviewed[i]!;
      const latest = new Map(labels.map((l) => [l.event_id, l])); // the later label of an event comes last
      const m1 = [...latest.values()].filter((l) => l.model_version === 'm1');
      const row = normalize(local[`${pipeline} realized-performance`]!).find((r) => r['model'] === 'm1' && r['class'] === m1[0]!.original_decision)!;
      const predicted = m1.filter((l) => l.original_decision === row['class']);
      const confirmed = predicted.filter((l) => l.decision_version === l.original_decision_version);
      assert.deepEqual([row['predicted_events'], row['confirmed']], [predicted.length, confirmed.length], `${pipeline} realized-performance`);
      const agreement = normalize(local[`${pipeline} reviewer-agreement`]!);
      assert.deepEqual(agreement, [{ item_kind: 'review', labeled_twice: 2, agreeing: 1, agreement: 0.5 }], `${pipeline} reviewer-agreement`);
      const time = normalize(local[`${pipeline} review-time`]!);
      assert.deepEqual(time.map((r) => [r['item_kind'], r['resolved_items'], r['sla_breaches']]), [['audit', 16, 0], ['review', 10, 2]], `${pipeline} review-time`);
      const volume = normalize(local[`${pipeline} review-volume`]!);
      assert.deepEqual(volume.map((r) => [r['item_kind'], r['labels'], r['reviewers']]), [['audit', 16, 2], ['review', 10, 2]], `${pipeline} review-volume`);
    }
    for (const name of ['class-distribution', 'decision-fields']) {
      assert.deepEqual(local[`${binary} ${name}`], [], `${name}: nothing for a binary pipeline without fields of its own`);
      assert.ok(local[`${multiclass} ${name}`]!.length > 0, `${name}: rows for the multiclass pipeline`);
    }
    const tablesLeft = new Set(current['__partitions_after']!.map((p) => p['table']));
    assert.ok(tablesLeft.has('stage_events') && !tablesLeft.has('dead_letters'), 'partitions listed from system.parts and dropped by day on current ClickHouse');
  });
});
