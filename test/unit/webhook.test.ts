/**
 * The webhook sink without a broker or a network: the signature a receiver
 * checks, Retry-After, the retry classification and budget, latest version
 * wins, the configuration's refusals, and the deliverer's batch handling (order
 * per partition, dead letters, a retried batch, a stop) with an in-memory
 * codec and a scripted receiver.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MemoryCodec } from '../../connectors/registry/memory.ts';
import { DEAD_LETTER_REASONS, type SourceRecord } from '../../lib/contracts.ts';
import { isSluiceError, SluiceError } from '../../lib/errors.ts';
import { createLogger } from '../../lib/log.ts';
import { webhookConfig, type WebhookConfig } from '../../processors/webhook/config.ts';
import { createDeliverer, type DeadLetterMessage, DeliveryInterrupted } from '../../processors/webhook/deliverer.ts';
import { createWebhookMetrics } from '../../processors/webhook/metrics.ts';
import {
  type AttemptResult,
  backoffWithJitter,
  classify,
  deliverWithRetries,
  HEADERS,
  headersOf,
  LatestVersions,
  parseRetryAfter,
  requestOf,
  signatureOf,
} from '../../processors/webhook/policy.ts';

const logger = createLogger({}, 'silent');
const NOW = Date.parse('2026-12-01T06:00:00Z');

describe('signature', () => {
  it('is HMAC-SHA256 over "<timestamp>.<body>", hex: the value openssl gives', () => {
    // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_test'
    assert.equal(signatureOf('whsec_test', 1_700_000_000, '{"a":1}'), '38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789');
  });

  it('signs each attempt over its own timestamp and the exact body sent; a receiver recomputing it accepts, a changed body or secret does not', () => {
    const request = requestOf('signup-risk', { event_id: 'evt-1', decision_version: 2, decision: 'block' });
    const headers = headersOf({ pipeline: 'signup-risk', request, attempt: 3, nowMs: NOW + 999, secret: 's3cret' });
    const timestamp = headers[HEADERS.timestamp]!;
    assert.equal(timestamp, String(Math.floor(NOW / 1000)));
    const expected = (secret: string, body: string) => `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
    assert.equal(headers[HEADERS.signature], expected('s3cret', request.body));
    assert.notEqual(headers[HEADERS.signature], expected('s3cret', request.body.replace('block', 'approve')));
    assert.notEqual(headers[HEADERS.signature], expected('other', request.body));
    assert.equal(headers[HEADERS.idempotencyKey], 'evt-1:2');
    assert.equal(headers[HEADERS.decisionVersion], '2');
    assert.equal(headers[HEADERS.attempt], '3');
    assert.equal(headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(request.body), { pipeline: 'signup-risk', decision: { event_id: 'evt-1', decision_version: 2, decision: 'block' } });
  });

  it('sends no signature header without a secret', () => {
    const request = requestOf('p', { event_id: 'e', decision_version: 1 });
    assert.equal(headersOf({ pipeline: 'p', request, attempt: 1, nowMs: NOW, secret: null })[HEADERS.signature], undefined);
  });
});

describe('Retry-After', () => {
  it('reads delta-seconds', () => {
    assert.equal(parseRetryAfter('0', NOW), 0);
    assert.equal(parseRetryAfter(' 120 ', NOW), 120_000);
  });

  it('reads an HTTP date, a past one meaning now', () => {
    assert.equal(parseRetryAfter(new Date(NOW + 30_000).toUTCString(), NOW), 30_000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', NOW), 0);
  });

  it('ignores what is neither (the sink\'s own backoff applies)', () => {
    for (const value of [undefined, null, '', '-5', '1.5', 'soon', '12abc']) assert.equal(parseRetryAfter(value, NOW), null, String(value));
  });
});

describe('retry classification', () => {
  const response = (status: number, retryAfter: string | null = null): AttemptResult => ({ kind: 'response', status, retryAfter });

  it('delivers on 2xx', () => {
    for (const status of [200, 201, 202, 204]) assert.deepEqual(classify(response(status), NOW), { action: 'delivered' });
  });

  it('retries 408, 429, 5xx, timeouts and connection errors, carrying Retry-After', () => {
    for (const status of [408, 429, 500, 502, 503, 504]) assert.equal(classify(response(status), NOW).action, 'retry', String(status));
    assert.deepEqual(classify(response(429, '7'), NOW), { action: 'retry', cause: 'http:429', retryAfterMs: 7_000 });
    assert.deepEqual(classify({ kind: 'timeout' }, NOW), { action: 'retry', cause: 'timeout', retryAfterMs: null });
    assert.deepEqual(classify({ kind: 'network', code: 'ECONNREFUSED' }, NOW), { action: 'retry', cause: 'network:ECONNREFUSED', retryAfterMs: null });
  });

  it('gives up at once on any other 4xx, and on a redirect', () => {
    for (const status of [400, 401, 403, 404, 410, 413, 422, 301, 307]) assert.deepEqual(classify(response(status), NOW), { action: 'give-up', cause: `http:${status}` });
  });

  it('backs off exponentially with half the delay random, up to the maximum', () => {
    const policy = { initialBackoffMs: 100, maxBackoffMs: 1_000 };
    assert.equal(backoffWithJitter(1, policy, 0), 50);
    assert.equal(backoffWithJitter(1, policy, 0.999_999), 100);
    assert.equal(backoffWithJitter(3, policy, 0), 200);
    assert.equal(backoffWithJitter(20, policy, 0.5), 750);
  });
});

describe('deliverWithRetries', () => {
  const policy = { maxAttempts: 5, maxElapsedMs: 60_000, initialBackoffMs: 100, maxBackoffMs: 1_000, retryAfterMaxMs: 10_000 };

  function scripted(results: AttemptResult[], overrides: { maxAttempts?: number; maxElapsedMs?: number; retryAfterMaxMs?: number } = {}) {
    let clock = NOW;
    const waits: number[] = [];
    const sent: number[] = [];
    const run = deliverWithRetries({
      policy: { ...policy, ...overrides },
      now: () => clock,
      random: () => 0,
      send: async (attempt) => {
        sent.push(attempt);
        clock += 10;
        return results[Math.min(attempt, results.length) - 1]!;
      },
      sleep: async (ms) => {
        waits.push(ms);
        clock += ms;
        return true;
      },
    });
    return { run, waits, sent };
  }

  it('goes through a 500, a timeout and a 429 to delivery, waiting the backoff and then Retry-After', async () => {
    const { run, waits } = scripted([{ kind: 'response', status: 500, retryAfter: null }, { kind: 'timeout' }, { kind: 'response', status: 429, retryAfter: '2' }, { kind: 'response', status: 200, retryAfter: null }]);
    assert.deepEqual(await run, { outcome: 'delivered', attempts: 4, status: 200 });
    assert.deepEqual(waits, [50, 100, 2_000]);
  });

  it('caps a long Retry-After', async () => {
    const { run, waits } = scripted([{ kind: 'response', status: 429, retryAfter: '3600' }, { kind: 'response', status: 204, retryAfter: null }]);
    assert.equal((await run).outcome, 'delivered');
    assert.deepEqual(waits, [10_000]);
  });

  it('fails after maxAttempts attempts', async () => {
    const { run, sent } = scripted([{ kind: 'response', status: 503, retryAfter: null }]);
    const outcome = await run;
    assert.equal(outcome.outcome, 'failed');
    assert.deepEqual(sent, [1, 2, 3, 4, 5]);
    assert.ok(outcome.outcome === 'failed' && outcome.retriable && outcome.status === 503 && outcome.cause === 'http:503');
  });

  it('fails when the next attempt would start past maxElapsedMs', async () => {
    const { run, sent } = scripted([{ kind: 'network', code: 'ECONNRESET' }], { maxAttempts: 100, maxElapsedMs: 1_000 });
    const outcome = await run;
    assert.equal(outcome.outcome, 'failed');
    // Waits 50, 100, 200, 400 (+10 ms per attempt): a fifth wait of 500 would end past 1 s.
    assert.equal(sent.length, 5);
    assert.ok(outcome.outcome === 'failed' && outcome.cause === 'network:ECONNRESET' && outcome.status === null);
  });

  it('does not retry a refusal', async () => {
    const { run, sent } = scripted([{ kind: 'response', status: 422, retryAfter: null }]);
    const outcome = await run;
    assert.ok(outcome.outcome === 'failed' && !outcome.retriable && outcome.status === 422);
    assert.deepEqual(sent, [1]);
  });

  it('abandons when the stop ends a wait', async () => {
    const outcome = await deliverWithRetries({ policy, now: () => NOW, random: () => 0, send: async () => ({ kind: 'timeout' }), sleep: async () => false });
    assert.deepEqual(outcome, { outcome: 'abandoned', attempts: 1 });
  });
});

describe('LatestVersions', () => {
  it('lets a higher version through, and stops an equal or lower one once a version is settled', () => {
    const versions = new LatestVersions(10);
    assert.equal(versions.verdict('e1', 1), null);
    versions.settled('e1', 2);
    assert.equal(versions.verdict('e1', 1), 'superseded');
    assert.equal(versions.verdict('e1', 2), 'duplicate');
    assert.equal(versions.verdict('e1', 3), null);
    versions.settled('e1', 1);
    assert.equal(versions.verdict('e1', 2), 'duplicate', 'a lower version settled never lowers what is remembered');
  });

  it('forgets the least recently settled event beyond its capacity', () => {
    const versions = new LatestVersions(2);
    versions.settled('a', 1);
    versions.settled('b', 1);
    versions.settled('a', 2);
    versions.settled('c', 1);
    assert.equal(versions.size, 2);
    assert.equal(versions.verdict('b', 1), null, 'b was the oldest and is forgotten');
    assert.equal(versions.verdict('a', 1), 'superseded');
  });
});

describe('webhookConfig', () => {
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return isSluiceError(error) ? `${error.code}: ${error.message}` : String(error);
    }
    return 'no error';
  };

  it('refuses a --secret-env naming an unset or empty variable, naming it', () => {
    assert.match(code(() => webhookConfig({ url: 'http://x/h', secretEnv: 'HOOK_SECRET' }, {})), /^CONFIG_INVALID: .*HOOK_SECRET: that environment variable is not set/);
    assert.match(code(() => webhookConfig({ url: 'http://x/h', secretEnv: 'HOOK_SECRET' }, { HOOK_SECRET: ' ' })), /HOOK_SECRET: that environment variable is empty/);
  });

  it('refuses a URL that is not http(s) and a bad variable, in one error', () => {
    const message = code(() => webhookConfig({ url: 'ftp://x' }, { SLUICE_WEBHOOK_TIMEOUT_MS: 'soon' }));
    assert.match(message, /^CONFIG_INVALID: /);
    assert.match(message, /--url "ftp:\/\/x"/);
    assert.match(message, /SLUICE_WEBHOOK_TIMEOUT_MS/);
  });

  it('reads the secret and the settings, with defaults', () => {
    const config = webhookConfig({ url: 'https://hooks.example/in?token=abc', secretEnv: 'HOOK_SECRET', name: 'crm' }, { HOOK_SECRET: 'k', SLUICE_WEBHOOK_MAX_ATTEMPTS: '3' });
    assert.equal(config.secret, 'k');
    assert.equal(config.retry.maxAttempts, 3);
    assert.equal(config.endpointName, 'crm');
    assert.equal(config.requestTimeoutMs, 5_000);
  });
});

describe('deliverer', () => {
  const decidedSchema = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'schemas', 'signup-risk', 'decided.avsc'), 'utf8'));
  const codec = new MemoryCodec();
  codec.register('p.decided-value', decidedSchema);
  const encode = codec.encoderForSync('p.decided-value');

  const decision = (eventId: string, version: number) =>
    encode({
      event_id: eventId,
      pipeline: 'p',
      decision: 'approve',
      decided_by: 'model',
      reasons: [],
      score: 0.1,
      model_version: 'm1',
      policy_version: 'v1',
      decision_version: version,
      occurred_at: NOW,
      decided_at: NOW,
      replay_id: null,
      shadow_model_version: null,
      shadow_score: null,
      shadow_decision: null,
    });

  const record = (partition: number, offset: number, eventId: string, version = 1, value: Buffer | null = decision(eventId, version)): SourceRecord => ({
    topic: 'p.decided',
    partition,
    offset: String(offset),
    key: Buffer.from(eventId),
    value,
    headers: {},
    timestampMs: NOW,
  });

  const config = (overrides: Partial<WebhookConfig> = {}): WebhookConfig => ({
    ...webhookConfig({ url: 'http://receiver.test/hook' }, {}),
    retry: { maxAttempts: 3, maxElapsedMs: 60_000, initialBackoffMs: 1, maxBackoffMs: 2, retryAfterMaxMs: 5 },
    ...overrides,
  });

  /** A receiver answering `answer(eventId:version, attempt)`; it records what it accepted, in order. */
  function harness(answer: (key: string, attempt: number, stop: AbortSignal) => AttemptResult | Promise<AttemptResult>, overrides: Partial<WebhookConfig> = {}) {
    const accepted: string[] = [];
    const letters: DeadLetterMessage[] = [];
    const attempts = new Map<string, number>();
    let failDeadLetters = 0;
    const deliverer = createDeliverer({
      pipeline: 'p',
      config: config(overrides),
      codec,
      metrics: createWebhookMetrics({ pipeline: 'p', team: 't', endpoint: 'default' }),
      logger,
      post: async ({ headers, stop }) => {
        const key = headers[HEADERS.idempotencyKey]!;
        const attempt = (attempts.get(key) ?? 0) + 1;
        attempts.set(key, attempt);
        const result = await answer(key, attempt, stop);
        if (result.kind === 'response' && result.status < 300) accepted.push(key);
        return result;
      },
      writeDeadLetter: async (message) => {
        if (failDeadLetters > 0) {
          failDeadLetters--;
          throw new SluiceError('TOPIC_MISSING', 'p.dlq is gone');
        }
        letters.push(message);
      },
    });
    return { deliverer, accepted, letters, attempts, failNextDeadLetters: (n: number) => (failDeadLetters = n) };
  }

  const ok: AttemptResult = { kind: 'response', status: 200, retryAfter: null };

  it('delivers each partition in offset order, skips stale and repeated versions, and dead-letters what keeps failing', async () => {
    const { deliverer, accepted, letters } = harness((key, attempt) => (key === 'bad:1' ? { kind: 'response', status: 500, retryAfter: null } : attempt === 1 && key === 'a:1' ? { kind: 'timeout' } : ok));
    await deliverer.handle([record(0, 10, 'a'), record(1, 5, 'x'), record(0, 11, 'a', 2), record(0, 12, 'a', 1), record(1, 6, 'bad'), record(0, 13, 'a', 2), record(1, 7, 'y')]);
    const partition0 = accepted.filter((k) => k.startsWith('a'));
    assert.deepEqual(partition0, ['a:1', 'a:2'], 'in order; the late version 1 and the repeated version 2 are not delivered');
    assert.deepEqual(accepted.filter((k) => !k.startsWith('a')), ['x:1', 'y:1']);
    assert.equal(letters.length, 1);
    const letter = letters[0]!;
    assert.equal(letter.topic, 'p.dlq');
    assert.deepEqual(letter.value, decision('bad', 1), 'the original bytes');
    assert.equal(letter.headers['dlq.reason'], 'DELIVERY_FAILED');
    assert.ok(DEAD_LETTER_REASONS.includes('DELIVERY_FAILED'));
    assert.equal(letter.headers['dlq.stage'], 'webhook');
    assert.equal(letter.headers['dlq.event_id'], 'bad');
    assert.equal(letter.headers['dlq.source.topic'], 'p.decided');
    assert.equal(letter.headers['dlq.source.offset'], '6');
    assert.equal(letter.headers['dlq.webhook.attempts'], '3');
    assert.equal(letter.headers['dlq.webhook.status'], '500');
    assert.equal(letter.headers['dlq.error.code'], 'http:500');
    assert.equal(deliverer.handled(), 7);
  });

  it('never sends an older version while a newer one of the event was dead-lettered', async () => {
    const { deliverer, accepted, letters } = harness((key) => (key === 'e:2' ? { kind: 'response', status: 503, retryAfter: null } : ok));
    await deliverer.handle([record(0, 1, 'e', 2), record(0, 2, 'e', 1), record(0, 3, 'e', 3)]);
    assert.deepEqual(letters.map((l) => l.headers['dlq.webhook.decision_version']), ['2']);
    assert.deepEqual(accepted, ['e:3']);
  });

  it('dead-letters a record that is not a decision, without sending it', async () => {
    const { deliverer, accepted, letters } = harness(() => ok);
    await deliverer.handle([record(0, 1, 'junk', 1, Buffer.from('not avro'))]);
    assert.deepEqual(accepted, []);
    assert.equal(letters[0]?.headers['dlq.reason'], 'MALFORMED_PAYLOAD');
  });

  it('does not deliver again what it delivered when a batch is retried after a Kafka failure', async () => {
    const h = harness((key) => (key === 'bad:1' ? { kind: 'response', status: 400, retryAfter: null } : ok));
    const batch = [record(0, 1, 'a'), record(0, 2, 'bad'), record(0, 3, 'b'), record(1, 1, 'c')];
    h.failNextDeadLetters(1);
    // The dead letter cannot be written: the batch fails (the batch consumer commits nothing and retries it).
    await assert.rejects(h.deliverer.handle(batch), (error) => isSluiceError(error, 'TOPIC_MISSING'));
    assert.deepEqual([...h.accepted].sort(), ['a:1', 'c:1'], 'partition 1 went on; partition 0 stopped at the failure');
    await h.deliverer.handle(batch);
    assert.deepEqual([...h.accepted].sort(), ['a:1', 'b:1', 'c:1'], 'a and c are not delivered twice');
    assert.equal(h.letters.length, 1);
    assert.equal(h.letters[0]!.headers['dlq.error.code'], 'http:400');
  });

  it('on stop, finishes the batch within the grace (then it is committed), or abandons it and throws (nothing committed)', async () => {
    const healthy = harness(() => ok, { stopGraceMs: 10_000 });
    healthy.deliverer.beginStop();
    await healthy.deliverer.handle([record(0, 1, 'a'), record(0, 2, 'b')]);
    assert.deepEqual(healthy.accepted, ['a:1', 'b:1']);

    // A receiver that never answers 'slow': the request is abandoned when the grace ends (the real post() watches the same signal).
    const never = (stop: AbortSignal) => new Promise<AttemptResult>((resolve) => stop.addEventListener('abort', () => resolve({ kind: 'abandoned' })));
    const hanging = harness((key, _attempt, stop) => (key === 'slow:1' ? never(stop) : ok), { stopGraceMs: 20 });
    const run = hanging.deliverer.handle([record(0, 1, 'a'), record(0, 2, 'slow'), record(0, 3, 'b')]);
    hanging.deliverer.beginStop();
    await assert.rejects(run, DeliveryInterrupted);
    assert.deepEqual(hanging.accepted, ['a:1'], 'nothing after the abandoned request');
    await assert.rejects(hanging.deliverer.handle([record(0, 3, 'b')]), DeliveryInterrupted, 'no new batch after the grace');
  });
});
