/**
 * The ingest API in front of running pipelines (three stage processes each,
 * real Kafka, registry and models): every accepted event gets exactly one
 * decision and a duplicate is never decided again; a PDF uploaded over HTTP
 * is extracted, decided by ticket-triage (its security rule reads the PDF's
 * text), and the same PDF uploaded again is not decided twice; corrupt and
 * encrypted PDFs are refused with their codes.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addIngestKey } from '../../cli/ingest.ts';
import { deleteTopics, topicPartitions } from '../../connectors/kafka/admin.ts';
import { partitionFor } from '../../ingest/partitioner.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { type IngestConfig, ingestConfigFromEnv } from '../../ingest/config.ts';
import { type RunningGateway, serveIngest } from '../../ingest/server.ts';
import type { DecisionCommon } from '../../processors/decide/transform.ts';
import { buildPdf, garbagePdf } from '../fixtures/ingest/pdf.ts';
import { multipart, signupEvent } from '../fixtures/ingest/gateway.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

/**
 * One event per partition of `<p>.raw`, sent after everything else: once all are decided, everything sent
 * before them has been decided too, since each partition keeps its order through the stages (the key, the
 * event id here, is kept end to end). A lag count cannot tell this: the gateway's transactions interleave,
 * so a partition can end in several commit markers.
 */
function drainEvents(prefix: string, partitions: number, make: (id: string) => unknown): { ids: Set<string>; events: unknown[] } {
  const ids = new Set<string>();
  const events: unknown[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    let n = 0;
    while (partitionFor(`${prefix}-drain-${partition}-${n}`, partitions) !== partition) n++;
    const id = `${prefix}-drain-${partition}-${n}`;
    ids.add(id);
    events.push(make(id));
  }
  return { ids, events };
}

interface Result {
  event_id: string;
  status: string;
  partition: number;
  offset: string;
}

describe('ingest API in front of running pipelines', { timeout: 400_000 }, () => {
  const prefix = uniqueName('ingest');
  let config: IngestConfig;
  let gateway: RunningGateway;
  const instances: PipelineInstance[] = [];
  let signup: PipelineInstance;
  let triage: PipelineInstance;
  let signupDecided: Collector<DecisionCommon>;
  let triageDecided: Collector<DecisionCommon>;

  before(async () => {
    [signup, triage] = await Promise.all([PipelineInstance.create('ingest', {}, 'signup-risk'), PipelineInstance.create('ingest', {}, 'ticket-triage')]);
    instances.push(signup, triage);
    signupDecided = await signup.collect<DecisionCommon>('decided');
    triageDecided = await triage.collect<DecisionCommon>('decided');
    await Promise.all(instances.map((instance) => instance.start()));
    config = ingestConfigFromEnv(
      {
        KAFKA_BROKERS: connections.kafkaBrokers.join(','),
        SLUICE_INGEST_KEYS_TOPIC: `${prefix}.ingest-keys`,
        SLUICE_INGEST_IDEMPOTENCY_TOPIC: `${prefix}.ingest-ids`,
        SLUICE_INGEST_DOCUMENT_DIR: join(stackPaths().root, 'tests', prefix, 'documents'),
        SLUICE_INGEST_INSTANCE_ID: prefix,
        LOG_LEVEL: 'warn',
      },
      { port: 0 },
    );
    gateway = await serveIngest({ config });
  });

  after(async () => {
    await gateway?.stop();
    await Promise.all(instances.map((instance) => instance.stop()));
    await deleteTopics(connections.kafkaBrokers, [config.keysTopic, config.idempotencyTopic]).catch(() => {});
  });

  /** Adds a key and waits until the gateway knows it (a key is followed from its topic within a second or so). */
  const newKey = async (pipeline: string, rate: number) => {
    const { key } = await addIngestKey(config, pipeline, rate);
    await waitFor('the gateway to know the new key', async () => {
      const response = await fetch(`${gateway.url}/v1/pipelines/${pipeline}/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: '{}', // an empty object: refused as INVALID_ENVELOPE once the key is known, produces nothing
      });
      return response.status === 400;
    });
    return key;
  };

  const postEvents = async (pipeline: string, key: string, body: unknown) => {
    const response = await fetch(`${gateway.url}/v1/pipelines/${pipeline}/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.equal(response.status, 202, await response.clone().text());
    return ((await response.json()) as { results: Result[] }).results;
  };

  const upload = async (pipeline: string, key: string, bytes: Buffer, filename: string) => {
    const form = await multipart([{ name: 'file', value: bytes, filename, type: 'application/pdf' }]);
    const response = await fetch(`${gateway.url}/v1/pipelines/${pipeline}/documents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': form.contentType },
      body: form.body,
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> & { error?: { code: string } } };
  };

  it('every accepted event is decided exactly once; sending them again answers duplicate and decides nothing more', async () => {
    const key = await newKey(signup.name, 10_000);
    const ids = Array.from({ length: 60 }, (_, i) => `${prefix}-s-${i}`);
    const events = ids.map((id, i) => signupEvent(id, { payload: { user_id: `u-${i % 7}`, email: `user${i}@example.com`, country: 'de', signup_channel: 'web', plan: 'free' } }));
    // Batches of 20, and the last ten one request each.
    const first = [
      ...(await postEvents(signup.name, key, { events: events.slice(0, 20) })),
      ...(await postEvents(signup.name, key, { events: events.slice(20, 50) })),
      ...(await Promise.all(events.slice(50).map(async (event) => (await postEvents(signup.name, key, event))[0]!))),
    ];
    assert.deepEqual(first.map((r) => r.status), ids.map(() => 'accepted'));

    const idSet = new Set(ids);
    await signupDecided.until('every accepted event decided', (ms) => ms.filter((m) => idSet.has(m.value.event_id)).length >= ids.length, 120_000);

    const again = [...(await postEvents(signup.name, key, { events: events.slice(0, 30) })), ...(await postEvents(signup.name, key, { events: events.slice(30) }))];
    assert.deepEqual(again.map((r) => r.status), ids.map(() => 'duplicate'));
    assert.deepEqual(again.map((r) => [r.partition, r.offset]), first.map((r) => [r.partition, r.offset]), 'duplicates answer the original coordinates');

    const drain = drainEvents(`${prefix}-s`, await topicPartitions(connections.kafkaBrokers, signup.topic('raw')), (id) => signupEvent(id));
    await postEvents(signup.name, key, { events: drain.events });
    await signupDecided.until('the drain events decided', (ms) => [...drain.ids].every((id) => ms.some((m) => m.value.event_id === id)), 120_000);
    const decided = signupDecided.messages.filter((m) => idSet.has(m.value.event_id));
    assert.equal(decided.length, ids.length, 'exactly one decision per accepted event, none for the duplicates');
    assert.equal(new Set(decided.map((m) => m.value.event_id)).size, ids.length);
    for (const { value } of decided) {
      assert.equal(value.pipeline, signup.name);
      assert.ok(['approve', 'review', 'block'].includes(value.decision), value.decision);
    }
  });

  it('a PDF uploaded over HTTP is decided by ticket-triage from its text; the same PDF again is not decided twice; corrupt and encrypted PDFs are refused', async () => {
    const key = await newKey(triage.name, 100);
    const pdf = buildPdf({
      pages: [
        [`Incident report ${prefix}`, 'Customer says their account email was changed overnight.'],
        ['We believe this is a data breach: exported customer records were found on a forum.'],
      ],
    });
    const accepted = await upload(triage.name, key, pdf, 'incident.pdf');
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    assert.equal(accepted.body['status'], 'accepted');
    assert.equal(accepted.body['pages'], 2);
    const eventId = accepted.body['event_id'] as string;

    const decision = (
      await triageDecided.until('the document decided', (ms) => ms.some((m) => m.value.event_id === eventId), 120_000)
    ).find((m) => m.value.event_id === eventId)!.value;
    assert.equal(decision.decision, 'route');
    assert.equal(decision['queue'], 'security', 'the security rule read the PDF\'s second page');
    assert.equal(decision['priority'], 'P1');
    assert.equal(decision.decided_by, 'rule');

    const again = await upload(triage.name, key, pdf, 'incident-copy.pdf');
    assert.equal(again.status, 202);
    assert.equal(again.body['status'], 'duplicate');
    assert.equal(again.body['event_id'], eventId);

    const corrupt = await upload(triage.name, key, garbagePdf(), 'broken.pdf');
    assert.equal(corrupt.status, 422);
    assert.equal(corrupt.body.error?.code, 'CORRUPT_DOCUMENT');
    const encrypted = await upload(triage.name, key, buildPdf({ pages: [['data breach details']], userPassword: 'hunter2' }), 'locked.pdf');
    assert.equal(encrypted.status, 422);
    assert.equal(encrypted.body.error?.code, 'ENCRYPTED_DOCUMENT');

    const drain = drainEvents(`${prefix}-t`, await topicPartitions(connections.kafkaBrokers, triage.topic('raw')), (id) => ({
      event_id: id,
      event_type: 'jira_ticket_created',
      occurred_at: '2026-11-30T10:00:00Z',
      source: 'jira',
      payload: { ticket_key: 'SUP-1', project: 'Support', summary: 'Please add an export button' },
    }));
    await postEvents(triage.name, key, { events: drain.events });
    await triageDecided.until('the drain events decided', (ms) => [...drain.ids].every((id) => ms.some((m) => m.value.event_id === id)), 120_000);
    assert.equal(triageDecided.messages.filter((m) => m.value.event_id === eventId).length, 1, 'one decision for the document');
    assert.equal(triageDecided.messages.filter((m) => !drain.ids.has(m.value.event_id)).length, 1, 'nothing else reached the pipeline');
  });
});
