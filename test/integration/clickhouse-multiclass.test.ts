/**
 * The sink is generic over pipelines: records of a pipeline it has never heard
 * of, with a multiclass model (label, class names and probabilities) and
 * decisions that carry fields of their own (queue, priority), land in
 * ClickHouse whole, and every documented query answers for that pipeline
 * through `sluice clickhouse query <name> --pipeline <instance>`.
 *
 * The records are this test's own: Avro schemas with the common fields of
 * every contract plus ticket-triage-shaped extras, registered under the
 * instance's subjects and produced straight to its topics, so no stage runs.
 * The instance name belongs to no known pipeline kind: the sink reads records
 * by the schema id they carry, never by pipeline.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { NODE_FLAGS, SLUICE_BIN } from '../../cli/processes.ts';
import { DOCUMENTED_QUERIES, type QueryRow, runDocumentedQuery } from '../../connectors/clickhouse/analytics.ts';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { deleteTopics, ensureTopics, openProducer, type PlainMessage } from '../../connectors/kafka/admin.ts';
import { avroType, framedEncoder, SchemaCatalog } from '../../connectors/registry/registry.ts';
import { createLogger } from '../../lib/log.ts';
import type { CommonDecision, CommonScored, CommonValidated } from '../../processors/sink/records.ts';
import { type RunningSink, runClickHouseSink, sinkTopics } from '../../processors/sink/runner.ts';
import { sinkConfigFromEnv } from '../../processors/sink/config.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';

const timestampMs = { type: 'long', logicalType: 'timestamp-millis' };
const nullable = (type: unknown) => ({ type: ['null', type], default: null });
const strings = { type: 'array', items: 'string' };
const doubles = { type: 'array', items: 'double' };
const CLASSES = ['billing', 'bug', 'security', 'account', 'feature_request'] as const;
const PRIORITIES = ['P1', 'P2', 'P3', 'P4'] as const;

const envelopeFields = [
  { name: 'event_id', type: 'string' },
  { name: 'event_type', type: 'string' },
  { name: 'occurred_at', type: timestampMs },
  { name: 'source', type: 'string' },
  { name: 'payload', type: { type: 'record', name: 'TicketPayload', fields: [{ name: 'summary', type: 'string' }] } },
];
/** Test-local contracts: the common fields of every pipeline plus a multiclass model's and a triage policy's own. */
const SCHEMAS = {
  validated: {
    type: 'record',
    name: 'Validated',
    namespace: 'test.multiclass_sink',
    fields: [...envelopeFields, { name: 'dropped_fields', type: strings, default: [] }, { name: 'validated_at', type: timestampMs }],
  },
  scored: {
    type: 'record',
    name: 'Scored',
    namespace: 'test.multiclass_sink',
    fields: [
      ...envelopeFields,
      { name: 'score', ...nullable('double') },
      { name: 'label', ...nullable('string') },
      { name: 'class_names', type: strings, default: [] },
      { name: 'class_scores', type: doubles, default: [] },
      { name: 'model_version', ...nullable('string') },
      { name: 'feature_names', type: strings, default: [] },
      { name: 'feature_values', type: doubles, default: [] },
      { name: 'validated_at', type: timestampMs },
      { name: 'scored_at', type: timestampMs },
    ],
  },
  decided: {
    type: 'record',
    name: 'Decision',
    namespace: 'test.multiclass_sink',
    fields: [
      { name: 'event_id', type: 'string' },
      { name: 'pipeline', type: 'string' },
      { name: 'decision', type: 'string' },
      { name: 'decided_by', type: { type: 'enum', name: 'DecidedBy', symbols: ['model', 'rule', 'human', 'fallback'] } },
      { name: 'reasons', type: strings },
      { name: 'score', ...nullable('double') },
      { name: 'model_version', ...nullable('string') },
      { name: 'policy_version', type: 'string' },
      { name: 'decision_version', type: 'int' },
      { name: 'occurred_at', type: timestampMs },
      { name: 'decided_at', type: timestampMs },
      { name: 'queue', type: { type: 'enum', name: 'Queue', symbols: [...CLASSES] } },
      { name: 'priority', type: { type: 'enum', name: 'Priority', symbols: [...PRIORITIES] } },
    ],
  },
} as const;

const EVENTS = 40;

interface Run {
  validated: CommonValidated[];
  scored: CommonScored[];
  /** Every decision produced, corrections included. */
  decided: CommonDecision[];
  deadLetters: PlainMessage[];
}

/** A deterministic multiclass run: two model versions, routes and reviews, reviewers re-routing every tenth event. */
function makeRun(pipeline: string, baseMs: number): Run {
  const run: Run = { validated: [], scored: [], decided: [], deadLetters: [] };
  for (let i = 0; i < EVENTS; i++) {
    const event_id = `${pipeline}-e${i}`;
    const occurred_at = baseMs + i * 1_000;
    const envelope = { event_id, event_type: 'jira_ticket_created', occurred_at, source: 'jira', payload: { summary: `ticket ${i}` } };
    run.validated.push({ ...envelope, dropped_fields: [], validated_at: occurred_at + 5 });
    const raw = CLASSES.map((_, c) => 1 + ((i * (c + 2) + c) % 9));
    const total = raw.reduce((a, b) => a + b, 0);
    const probs = raw.map((r) => r / total);
    const top = probs.indexOf(Math.max(...probs));
    const score = probs[top]!;
    const label = CLASSES[top]!;
    const model_version = i < EVENTS / 2 ? 'tt-m1' : 'tt-m2';
    run.scored.push({
      ...envelope,
      score,
      label,
      class_names: [...CLASSES],
      class_scores: probs,
      model_version,
      feature_names: ['text_chars', 'text_tokens'],
      feature_values: [20 + i, 4 + (i % 6)],
      validated_at: occurred_at + 5,
      scored_at: occurred_at + 20,
    });
    const first: CommonDecision = {
      event_id,
      pipeline,
      decision: score >= 0.3 ? 'route' : 'review',
      decided_by: label === 'security' ? 'rule' : 'model',
      reasons: [score >= 0.3 ? 'confident' : 'low_confidence'],
      score,
      model_version,
      policy_version: 'tt-policy-1',
      decision_version: 1,
      occurred_at,
      decided_at: occurred_at + 30,
      queue: label,
      priority: label === 'security' ? 'P1' : PRIORITIES[i % 4]!,
    };
    run.decided.push(first);
    if (i % 10 === 3) {
      run.decided.push({ ...first, decision: 'route', decided_by: 'human', reasons: ['reviewer'], score: null, model_version: null, decision_version: 2, decided_at: occurred_at + 60_000, queue: 'security', priority: 'P1' });
    }
  }
  for (let i = 0; i < 3; i++) {
    run.deadLetters.push({
      key: `bad-${i}`,
      value: JSON.stringify({ event_id: `${pipeline}-bad${i}`, occurred_at: baseMs, payload: { reporter_email: 'bob@example.com' } }),
      headers: {
        'dlq.reason': 'SCHEMA_VIOLATION',
        'dlq.message': 'payload.summary: missing',
        'dlq.stage': 'validate',
        'dlq.source.topic': `${pipeline}.raw`,
        'dlq.source.partition': '0',
        'dlq.source.offset': String(i),
        'dlq.failed_at': String(baseMs + 1_000),
      },
    });
  }
  return run;
}

/** The standing (highest-version) decision of every event. */
function standing(decided: CommonDecision[]): CommonDecision[] {
  const latest = new Map<string, CommonDecision>();
  for (const d of decided) if ((latest.get(d.event_id)?.decision_version ?? 0) < d.decision_version) latest.set(d.event_id, d);
  return [...latest.values()];
}

const num = (value: unknown) => Number(value ?? 0);

function countBy<T>(items: T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

/** Sums a count column over the hours, by a key of the other columns. */
function sumBy(rows: QueryRow[], key: (row: QueryRow) => string, column: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const row of rows) sums.set(key(row), (sums.get(key(row)) ?? 0) + num(row[column]));
  return sums;
}

function sluiceQuery(args: string[]) {
  return spawnSync(process.execPath, [...NODE_FLAGS, SLUICE_BIN, 'clickhouse', 'query', ...args], { encoding: 'utf8' });
}

describe('ClickHouse sink: a multiclass pipeline whose decisions carry fields of their own', () => {
  const client = createClickHouse({ url: connections.clickhouseUrl });
  const pipeline = uniqueName('tt-sinktest');
  // The hour before the current one, so every row falls in one hour of the last day (the server's hour, whatever its zone).
  const baseMs = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000 + 60_000;
  const run = makeRun(pipeline, baseMs);
  let sink: RunningSink | undefined;

  before(async () => {
    await migrate(client, { url: connections.clickhouseUrl });
    await ensureTopics(
      connections.kafkaBrokers,
      sinkTopics(pipeline).map((topic) => ({ topic, partitions: 3, replicationFactor: 1, config: {} })),
    );
    const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
    const encoders = Object.fromEntries(
      await Promise.all(
        (Object.keys(SCHEMAS) as Array<keyof typeof SCHEMAS>).map(async (suffix) => {
          const id = await catalog.register(`${pipeline}.${suffix}-value`, SCHEMAS[suffix]);
          return [suffix, framedEncoder(id, avroType(SCHEMAS[suffix]))] as const;
        }),
      ),
    ) as Record<keyof typeof SCHEMAS, (value: unknown) => Buffer>;
    const producer = await openProducer(connections.kafkaBrokers, 'it-clickhouse-multiclass');
    try {
      for (const suffix of ['validated', 'scored', 'decided'] as const) {
        await producer.send(
          `${pipeline}.${suffix}`,
          run[suffix].map((value) => ({ key: value.event_id, value: encoders[suffix](value) })),
        );
      }
      await producer.send(`${pipeline}.dlq`, run.deadLetters);
    } finally {
      await producer.close();
    }
    sink = await runClickHouseSink({
      pipeline: { name: pipeline, owners: { team: 'test' } },
      connections,
      config: { ...sinkConfigFromEnv({}), maxBatchWaitMs: 200, sessionTimeoutMs: 6_000, metricsPort: 0 },
      logger: createLogger({ test: 'clickhouse-multiclass' }, 'error'),
      handleSignals: false,
    });
    await waitFor(
      `ClickHouse to hold ${EVENTS} decided events and ${run.deadLetters.length} dead letters of ${pipeline}`,
      async () => {
        const rows = await runDocumentedQuery(client, 'loss-check', { pipeline });
        const total = (column: string) => rows.reduce((n, row) => n + num(row[column]), 0);
        const seen = { validated: total('validated'), scored: total('scored'), decided: total('decided'), rejected: total('rejected') };
        const [{ n } = { n: '0' }] = await queryRows<{ n: string }>(client, `SELECT count() AS n FROM sluice.decisions WHERE pipeline = ${quote(pipeline)}`);
        if (seen.validated === EVENTS && seen.scored === EVENTS && seen.decided === EVENTS && seen.rejected === 3 && num(n) >= run.decided.length) return seen;
        throw new Error(`not yet: ${JSON.stringify({ ...seen, decisionRows: n })}`);
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
  });

  after(async () => {
    if (sink) {
      await sink.stop();
      await sink.done;
    }
    await deleteTopics(connections.kafkaBrokers, sinkTopics(pipeline)).catch(() => {});
    await deletePipelineRows(client, pipeline).catch(() => {});
    await client.close();
  });

  it('keeps each event\'s label and class probabilities in model_outputs', async () => {
    const rows = await queryRows<{ event_id: string; model_version: string; score: number; label: string; class_names: string[]; class_scores: number[] }>(
      client,
      `SELECT event_id, model_version, score, label, class_names, class_scores FROM sluice.model_outputs WHERE pipeline = ${quote(pipeline)} ORDER BY event_id`,
    );
    const expected = [...run.scored].sort((a, b) => (a.event_id < b.event_id ? -1 : 1));
    assert.deepEqual(
      rows.map((r) => [r.event_id, r.model_version, r.score, r.label, r.class_names, r.class_scores]),
      expected.map((s) => [s.event_id, s.model_version, s.score, s.label, s.class_names, s.class_scores]),
    );
  });

  it('keeps each decision\'s own fields (queue, priority) in decisions, per version', async () => {
    const rows = await queryRows<{ event_id: string; decision_version: number; extra_names: string[]; extra_values: string[] }>(
      client,
      `SELECT event_id, decision_version, extra_names, extra_values FROM sluice.decisions WHERE pipeline = ${quote(pipeline)} ORDER BY event_id, decision_version`,
    );
    const expected = [...run.decided].sort((a, b) => (a.event_id === b.event_id ? a.decision_version - b.decision_version : a.event_id < b.event_id ? -1 : 1));
    assert.deepEqual(
      rows.map((r) => [r.event_id, Number(r.decision_version), r.extra_names, r.extra_values]),
      expected.map((d) => [d.event_id, d.decision_version, ['queue', 'priority'], [d.queue, d.priority]]),
    );
  });

  it('answers every documented query through `sluice clickhouse query <name> --pipeline`, as the API does', async () => {
    for (const query of DOCUMENTED_QUERIES) {
      const result = sluiceQuery([query.name, '--pipeline', pipeline, '--days', '2', '--json']);
      assert.equal(result.status, 0, `${query.name}: ${result.stderr}`);
      const cli = result.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as QueryRow);
      assert.deepEqual(cli, await runDocumentedQuery(client, query.name, { pipeline, days: 2 }), `${query.name} by the CLI`);
      if (query.name !== 'decision-fields' && query.name !== 'class-distribution') continue;
      assert.ok(cli.length > 0, `${query.name} has rows for a multiclass pipeline`);
    }
    const missing = sluiceQuery(['decision-mix']);
    assert.notEqual(missing.status, 0, 'a query without --pipeline is refused');
    assert.match(missing.stderr, /CONFIG_INVALID/);
  });

  it('class-distribution gives the mean probability and predicted count of every class, per model version', async () => {
    const rows = await runDocumentedQuery(client, 'class-distribution', { pipeline });
    const key = (version: unknown, name: unknown) => `${version}/${name}`;
    const events = sumBy(rows, (r) => key(r['model_version'], r['class_name']), 'events');
    const predicted = sumBy(rows, (r) => key(r['model_version'], r['class_name']), 'predicted');
    const weightedMean = new Map<string, number>();
    for (const r of rows) {
      const k = key(r['model_version'], r['class_name']);
      weightedMean.set(k, (weightedMean.get(k) ?? 0) + num(r['mean_score']) * num(r['events']));
    }
    for (const version of ['tt-m1', 'tt-m2']) {
      const scored = run.scored.filter((s) => s.model_version === version);
      for (const [c, name] of CLASSES.entries()) {
        const k = key(version, name);
        assert.equal(events.get(k), scored.length, `${k} events`);
        assert.equal(predicted.get(k) ?? 0, scored.filter((s) => s.label === name).length, `${k} predicted`);
        const mean = scored.reduce((n, s) => n + s.class_scores![c]!, 0) / scored.length;
        assert.ok(Math.abs(weightedMean.get(k)! / scored.length - mean) < 1e-5, `${k} mean ${weightedMean.get(k)! / scored.length} vs ${mean}`);
      }
    }
  });

  it('decision-fields and the decision queries count standing decisions only, a reviewer\'s re-routing included', async () => {
    const latest = standing(run.decided);
    const fields = await runDocumentedQuery(client, 'decision-fields', { pipeline });
    const byField = sumBy(fields, (r) => `${r['decision']}/${r['field']}=${r['value']}`, 'events');
    const expected = new Map<string, number>();
    for (const d of latest) {
      for (const field of ['queue', 'priority']) {
        const k = `${d.decision}/${field}=${d[field]}`;
        expected.set(k, (expected.get(k) ?? 0) + 1);
      }
    }
    assert.deepEqual(new Map([...byField].sort()), new Map([...expected].sort()));

    const mix = sumBy(await runDocumentedQuery(client, 'decision-mix', { pipeline }), (r) => String(r['decision']), 'events');
    assert.deepEqual(new Map([...mix].sort()), new Map([...countBy(latest, (d) => d.decision)].sort()));
    const decidedBy = sumBy(await runDocumentedQuery(client, 'decided-by', { pipeline }), (r) => String(r['decided_by']), 'events');
    assert.deepEqual(new Map([...decidedBy].sort()), new Map([...countBy(latest, (d) => d.decided_by)].sort()));
    const review = await runDocumentedQuery(client, 'review-rate', { pipeline });
    const total = (column: string) => review.reduce((n, row) => n + num(row[column]), 0);
    assert.equal(total('events'), EVENTS);
    assert.equal(total('resolved_by_reviewers'), latest.filter((d) => d.decided_by === 'human').length);
    assert.equal(total('awaiting_review'), latest.filter((d) => d.decision === 'review').length);

    const letters = await runDocumentedQuery(client, 'recent-dead-letters', { pipeline });
    assert.equal(letters.length, 3);
    for (const row of letters) assert.doesNotMatch(String(row['preview']), /bob@example/, 'personal data masked');
  });
});
