/**
 * Duplicates on the Kafka path, on the real stack: the same events produced
 * twice to `<p>.raw` (as a producer's retries arrive: same key, same
 * partition), the validate process SIGKILLed between the copies. Its
 * successor restores the duplicate check from the changelog, so every event
 * is decided once; the copies are on the changelog as duplicates and in
 * ClickHouse's stage events with outcome `duplicate`, through the sink. A few
 * of the events are late or early for the pipeline's bounds: decided all the
 * same, and flagged in ClickHouse.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { setTopicConfig } from '../../connectors/kafka/admin.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { envelopeBytes, generateSignups } from '../../pipelines/signup-risk/generator.ts';
import type { DecisionRecord } from '../../pipelines/signup-risk/types.ts';
import type { DedupEntry } from '../../processors/validate/changelog.ts';
import { connections, type SluiceRun, sluiceAsync, uniqueName, waitFor } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

const EVENTS = 120;
/** Of EVENTS: this many older than signup-risk's lateness bound (1 h), and as many beyond its clock skew (5 min). */
const UNTIMELY = 5;

describe('validate: duplicates on the Kafka path', () => {
  const client = createClickHouse({ url: connections.clickhouseUrl });
  let instance: PipelineInstance | undefined;
  let sink: SluiceRun | undefined;
  const aborting: PipelineInstance[] = [];
  after(async () => {
    sink?.kill('SIGKILL');
    await sink?.exited;
    await instance?.stop();
    for (const other of aborting) await other.stop();
    await client.close();
  });

  it('the same events twice, validate SIGKILLed between the copies: one decision each, the copies duplicates in ClickHouse; late and early events flagged there', async (t) => {
    await migrate(client, { url: connections.clickhouseUrl });
    // The group moves a killed member's partitions after the session timeout: the broker's minimum.
    instance = await PipelineInstance.create('it-dedup', { SLUICE_SESSION_TIMEOUT_MS: '6000' });
    const pipeline = instance;
    const decided = await pipeline.collect<DecisionRecord>('decided');
    const changelog = await pipeline.collect<DedupEntry | null>('validate-dedup');
    await pipeline.start();

    const prefix = uniqueName('dedup');
    const now = Date.now();
    const events = [
      ...generateSignups({ seed: 17, count: EVENTS - 2 * UNTIMELY, startMs: now, spacingMs: 1, idPrefix: prefix }),
      ...generateSignups({ seed: 18, count: UNTIMELY, startMs: now - 2 * 3_600_000, spacingMs: 1, idPrefix: `${prefix}-late` }),
      ...generateSignups({ seed: 19, count: UNTIMELY, startMs: now + 30 * 60_000, spacingMs: 1, idPrefix: `${prefix}-early` }),
    ];
    const messages = events.map((e) => ({ key: e.key, value: envelopeBytes(e.envelope) }));
    const entries = (duplicate: boolean) => changelog.messages.filter((m) => m.value !== null && m.value.duplicate === duplicate);

    await pipeline.produce(messages);
    await decided.until(`${EVENTS} decisions`, (ms) => ms.length >= EVENTS, 120_000);
    await changelog.until('every first copy on the changelog', () => entries(false).length >= EVENTS, 120_000);

    // Between the copies: the validate process dies without a word, and a new one starts with empty memory.
    await pipeline.stopStage('validate', 'SIGKILL');
    await pipeline.startStage('validate').running;
    await pipeline.produce(messages);

    await changelog.until(`${EVENTS} copies dropped as duplicates`, () => entries(true).length >= EVENTS, 120_000);
    await pipeline.waitForIdle();

    const ids = decided.messages.map((m) => m.value.event_id);
    assert.equal(new Set(ids).size, EVENTS, 'every event decided');
    assert.equal(ids.length, EVENTS, 'no event decided twice');
    const dropped = entries(true);
    assert.equal(dropped.length, EVENTS, 'each copy dropped once');
    assert.deepEqual(new Set(dropped.map((m) => m.value!.event_id)), new Set(events.map((e) => e.envelope.event_id)));
    // Each entry is on the partition its raw record was on: the one its key maps to, like the first copy's.
    const firstPartition = new Map(entries(false).map((m) => [m.key, m.partition]));
    for (const m of dropped) assert.equal(m.partition, firstPartition.get(m.key), `${m.key} on one partition`);

    sink = sluiceAsync(['sink', 'clickhouse', '--pipeline', pipeline.name], { SLUICE_METRICS_PORT: '0', SLUICE_SINK_MAX_BATCH_WAIT_MS: '200' });
    const row = await waitFor(
      `${EVENTS} duplicate stage events in ClickHouse`,
      async () => {
        const [counts] = await queryRows<{ duplicates: string; passed: string; late: string; early: string }>(
          client,
          `SELECT uniqExactIf(event_id, outcome = 'duplicate') AS duplicates, uniqExactIf(event_id, outcome = 'passed') AS passed,
                  uniqExactIf(event_id, timeliness = 'late') AS late, uniqExactIf(event_id, timeliness = 'early') AS early
           FROM sluice.stage_events WHERE pipeline = ${quote(pipeline.name)} AND stage = 'validate'`,
        );
        return Number(counts?.duplicates) >= EVENTS && Number(counts?.passed) >= EVENTS ? counts : undefined;
      },
      { timeoutMs: 120_000 },
    );
    assert.equal(Number(row.duplicates), EVENTS);
    assert.equal(Number(row.passed), EVENTS);
    const late = await queryRows<{ event_id: string }>(client, `SELECT DISTINCT event_id FROM sluice.stage_events WHERE pipeline = ${quote(pipeline.name)} AND timeliness = 'late'`);
    const early = await queryRows<{ event_id: string }>(client, `SELECT DISTINCT event_id FROM sluice.stage_events WHERE pipeline = ${quote(pipeline.name)} AND timeliness = 'early'`);
    assert.deepEqual(new Set(late.map((r) => r.event_id)), new Set(events.filter((e) => e.envelope.event_id.startsWith(`${prefix}-late`)).map((e) => e.envelope.event_id)));
    assert.deepEqual(new Set(early.map((r) => r.event_id)), new Set(events.filter((e) => e.envelope.event_id.startsWith(`${prefix}-early`)).map((e) => e.envelope.event_id)));
    t.diagnostic(`${EVENTS} events produced twice, validate SIGKILLed in between: ${ids.length} decisions, ${dropped.length} duplicates in Kafka and ClickHouse`);
  });

  it('a transaction the broker aborts leaves no trace in the duplicate check: its redelivered events are decided, not dropped', async (t) => {
    const abortInstance = await PipelineInstance.create('it-dedup-abort');
    aborting.push(abortInstance);
    const decided = await abortInstance.collect<DecisionRecord>('decided');
    const changelog = await abortInstance.collect<DedupEntry | null>('validate-dedup');
    await abortInstance.start();
    // The stages read the limits at start; from now on the broker refuses a transaction of over 64 KiB to validated
    // (MESSAGE_TOO_LARGE: aborted, the partition rewound and redelivered, split into smaller transactions).
    await setTopicConfig(connections.kafkaBrokers, abortInstance.topic('validated'), { 'max.message.bytes': String(65_536) });
    const prefix = uniqueName('abort');
    const events = [...generateSignups({ seed: 23, count: 200, startMs: Date.now(), idPrefix: prefix })].map((event) => {
      const envelope = structuredClone(event.envelope);
      envelope.payload.referral_code = 'r'.repeat(2_000); // about 2 KB each: 200 of them are far over 64 KiB
      return envelope;
    });
    // One key: one partition, so the first transaction holds far more than the new limit.
    await abortInstance.produce(events.map((envelope) => ({ key: 'one-key', value: Buffer.from(JSON.stringify(envelope)) })));

    const ids = new Set(events.map((e) => e.event_id));
    await decided.until('every event decided', (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= ids.size, 120_000);
    await abortInstance.waitForIdle();
    const log = readFileSync(join(stackPaths().logs, 'tests', `${abortInstance.name}.validate.log`), 'utf8');
    assert.match(log, /refused a transaction as too large/, 'the broker did abort a transaction of these events');
    const mine = decided.messages.filter((m) => ids.has(m.value.event_id));
    assert.equal(mine.length, ids.size, 'each decided once');
    const entries = changelog.messages.filter((m) => m.value !== null && ids.has(m.value.event_id));
    assert.equal(entries.filter((m) => m.value!.duplicate).length, 0, 'no redelivered event taken for a duplicate of its aborted copy');
    assert.equal(entries.length, ids.size, 'one committed changelog entry per event');
    t.diagnostic(`${ids.size} events through an aborted transaction: ${mine.length} decisions, 0 duplicates`);
  });
});
