/**
 * The webhook sink end to end, on the real stack: a pipeline instance of its
 * own (unique topics and subjects), decisions encoded with the registry's
 * schema written to `<p>.decided`, the sink as a process (`sluice sink
 * webhook`), and a real HTTP receiver (node:http) that answers 500, hangs past
 * the timeout and answers 429 with Retry-After on the way, and always fails
 * for one decision. The receiver is the judge: what it accepted, by
 * idempotency key, in which order, with which signature.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { NODE_FLAGS, SLUICE_BIN } from '../../cli/processes.ts';
import { deleteGroups, groupLag, openProducer } from '../../connectors/kafka/admin.ts';
import { webhookGroupId } from '../../processors/webhook/runner.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';
import { connections, freePort, sluiceSync, uniqueName, waitFor } from '../helpers.ts';

const SECRET = 'whsec-integration-test';
const NOW = Date.now();

interface Received {
  key: string;
  attempt: number;
  at: number;
  signatureValid: boolean;
  body: { pipeline: string; decision: { event_id: string; decision_version: number; decision: string } };
}

/**
 * The receiver: `script(key, attempt)` says how to answer. It verifies every
 * request's signature the way docs/webhook.md tells a receiver to.
 */
class Receiver {
  readonly received: Received[] = [];
  /** Idempotency keys answered 2xx, in order. */
  readonly accepted: string[] = [];
  private readonly hanging = new Set<ServerResponse>();
  private server?: Server;
  url = '';

  private readonly script: (key: string, attempt: number) => 'ok' | 'fail' | 'hang' | 'throttle';

  constructor(script: (key: string, attempt: number) => 'ok' | 'fail' | 'hang' | 'throttle') {
    this.script = script;
  }

  async start(): Promise<void> {
    const port = await freePort();
    this.server = createServer((request, response) => void this.answer(request, response));
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${port}/hooks/decisions?token=not-logged`;
  }

  private async answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let body = '';
    for await (const chunk of request) body += chunk;
    const key = String(request.headers['idempotency-key']);
    const timestamp = String(request.headers['x-sluice-timestamp']);
    const expected = `v1=${createHmac('sha256', SECRET).update(`${timestamp}.${body}`).digest('hex')}`;
    const attempt = this.received.filter((r) => r.key === key).length + 1;
    this.received.push({ key, attempt, at: Date.now(), signatureValid: request.headers['x-sluice-signature'] === expected, body: JSON.parse(body) });
    const action = this.script(key, attempt);
    if (action === 'hang') {
      this.hanging.add(response);
      return;
    }
    if (action === 'throttle') {
      response.writeHead(429, { 'retry-after': '1' }).end('slow down');
      return;
    }
    if (action === 'fail') {
      response.writeHead(500).end('receiver broke');
      return;
    }
    this.accepted.push(key);
    response.writeHead(204).end();
  }

  attemptsOf(key: string): Received[] {
    return this.received.filter((r) => r.key === key);
  }

  async stop(): Promise<void> {
    for (const response of this.hanging) response.destroy();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

interface SinkProcess {
  child: ChildProcess;
  running: Promise<void>;
  exited: Promise<number | string>;
  output(): string;
}

/** `sluice sink webhook` as its own process, the way an operator runs it. */
function spawnWebhookSink(args: string[], env: Record<string, string>): SinkProcess {
  const child = spawn(process.execPath, [...NODE_FLAGS, SLUICE_BIN, 'sink', 'webhook', ...args], {
    env: { ...process.env, SLUICE_WEBHOOK_SESSION_TIMEOUT_MS: '6000', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  let log = '';
  const running = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('"msg":"webhook sink running"')) resolve();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    void exited.then((code) => reject(new Error(`webhook sink exited (${code}) before it was running: ${log.slice(-3_000)}`)));
  });
  running.catch(() => {});
  return { child, running, exited, output: () => log };
}

async function stopSink(sink: SinkProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string | undefined> {
  if (!sink || sink.child.exitCode !== null || sink.child.signalCode !== null) return sink?.exited;
  sink.child.kill(signal);
  return sink.exited;
}

describe('webhook sink', () => {
  let instance: PipelineInstance;
  let dlq: Collector<Buffer>;
  let receiver: Receiver;
  let sink: SinkProcess | undefined;
  const prefix = uniqueName('wh');
  const id = (key: number, n: number) => `${prefix}-u${key}-e${n}`;
  /** The decisions written, in order: [partition key, event id, version]. */
  const written: Array<{ key: string; eventId: string; version: number }> = [];
  let encode: (value: unknown) => Buffer;
  const bytesOf = new Map<string, Buffer>();

  const sinkLag = () => groupLag(connections.kafkaBrokers, webhookGroupId(instance.name), instance.topic('decided'));
  /** Records of `<p>.decided` past the sink group's committed offsets (a partition never written to counts 0). */
  const uncommitted = (lag: Awaited<ReturnType<typeof groupLag>>) => lag.reduce((n, p) => n + (p.end === 0n ? 0n : p.end - (p.committed < 0n ? 0n : p.committed)), 0n);

  const failsOnce = id(0, 1);
  const timesOutOnce = id(1, 2);
  const throttledOnce = id(2, 3);
  const alwaysFails = id(3, 0);
  const replayed = id(4, 1);
  const staleAfterNewer = id(5, 2);
  /** Keys the receiver leaves unanswered for now (the stop test). */
  const hangingKeys = new Set<string>();

  function decided(eventId: string, version: number): Buffer {
    return encode({
      event_id: eventId,
      pipeline: instance.name,
      decision: version > 1 ? 'block' : 'approve',
      decided_by: version > 1 ? 'human' : 'model',
      reasons: version > 1 ? ['reviewer correction'] : [],
      score: 0.25,
      model_version: 'signup-risk-test',
      policy_version: 'p1',
      decision_version: version,
      occurred_at: NOW,
      decided_at: NOW + version,
      replay_id: null,
      shadow_model_version: null,
      shadow_score: null,
      shadow_decision: null,
    });
  }

  async function write(decisions: Array<{ key: string; eventId: string; version: number }>): Promise<void> {
    const producer = await openProducer(connections.kafkaBrokers, 'sluice-test-webhook');
    try {
      await producer.send(
        instance.topic('decided'),
        decisions.map((d) => {
          const value = decided(d.eventId, d.version);
          bytesOf.set(`${d.eventId}:${d.version}`, value);
          return { key: d.key, value };
        }),
      );
    } finally {
      await producer.close();
    }
    written.push(...decisions);
  }

  before(async () => {
    instance = await PipelineInstance.create('webhook');
    encode = await instance.catalog.encoderFor(`${instance.name}.decided-value`);
    dlq = await instance.collect<Buffer>('dlq', 'bytes');
    receiver = new Receiver((key, attempt) => {
      if (key === `${alwaysFails}:1`) return 'fail';
      if (hangingKeys.has(key)) return 'hang';
      if (attempt > 1) return 'ok';
      if (key === `${failsOnce}:1`) return 'fail';
      if (key === `${timesOutOnce}:1`) return 'hang';
      if (key === `${throttledOnce}:1`) return 'throttle';
      return 'ok';
    });
    await receiver.start();
  });

  after(async () => {
    await stopSink(sink, 'SIGKILL');
    await receiver?.stop();
    await instance?.stop();
    if (instance) await deleteGroups(connections.kafkaBrokers, [webhookGroupId(instance.name)]).catch(() => {});
  });

  it('refuses to start when --secret-env names an unset variable, saying which', () => {
    const run = sluiceSync(['sink', 'webhook', '--pipeline', instance.name, '--url', receiver.url, '--secret-env', 'SLUICE_TEST_UNSET_WEBHOOK_SECRET'], {
      SLUICE_TEST_UNSET_WEBHOOK_SECRET: '',
    });
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /CONFIG_INVALID: .*SLUICE_TEST_UNSET_WEBHOOK_SECRET: that environment variable is empty/);
  });

  it('delivers each decision once, in order per key, signed, through a 500, a timeout and a 429; dead-letters the one that always fails; commits its offsets', async () => {
    const decisions: Array<{ key: string; eventId: string; version: number }> = [];
    for (let n = 0; n < 5; n++) for (let key = 0; key < 6; key++) decisions.push({ key: `${prefix}-u${key}`, eventId: id(key, n), version: 1 });
    // A replay's higher version, and on another key a version 3 followed by a late version 2 (which must not be delivered).
    decisions.push({ key: `${prefix}-u4`, eventId: replayed, version: 2 });
    decisions.push({ key: `${prefix}-u5`, eventId: staleAfterNewer, version: 3 });
    decisions.push({ key: `${prefix}-u5`, eventId: staleAfterNewer, version: 2 });
    await write(decisions);

    const metricsPort = await freePort();
    sink = spawnWebhookSink(['--pipeline', instance.name, '--url', receiver.url, '--secret-env', 'HOOK_SECRET'], {
      HOOK_SECRET: SECRET,
      SLUICE_METRICS_PORT: String(metricsPort),
      SLUICE_WEBHOOK_TIMEOUT_MS: '1000',
      SLUICE_WEBHOOK_MAX_ATTEMPTS: '4',
      SLUICE_WEBHOOK_RETRY_INITIAL_BACKOFF_MS: '100',
      SLUICE_WEBHOOK_RETRY_MAX_BACKOFF_MS: '400',
    });
    await sink.running;

    const expected = written.filter((d) => d.eventId !== alwaysFails && !(d.eventId === staleAfterNewer && d.version === 2)).map((d) => `${d.eventId}:${d.version}`);
    await waitFor(`${expected.length} decisions accepted by the receiver`, () => receiver.accepted.length >= expected.length, { timeoutMs: 120_000 });
    await dlq.until('the always-failing decision on the dead-letter topic', (m) => m.length >= 1, 120_000);
    await waitFor(
      'the sink group to commit every offset of the decided topic',
      async () => uncommitted(await sinkLag()) === 0n,
      { timeoutMs: 60_000 },
    );

    // Exactly once per idempotency key, and nothing else.
    assert.deepEqual([...receiver.accepted].sort(), [...expected].sort());
    // In order per key: the receiver saw each key's decisions in the order they were written.
    for (let key = 0; key < 6; key++) {
      const partitionKey = `${prefix}-u${key}`;
      const order = expected.filter((k) => written.find((d) => `${d.eventId}:${d.version}` === k)!.key === partitionKey);
      assert.deepEqual(
        receiver.accepted.filter((k) => order.includes(k)),
        order,
        `order of ${partitionKey}`,
      );
    }
    // Every request, failed attempts included, carried a valid signature and the decision as written.
    assert.ok(receiver.received.length > expected.length);
    assert.deepEqual(receiver.received.filter((r) => !r.signatureValid).map((r) => r.key), []);
    const replay = receiver.received.find((r) => r.key === `${replayed}:2`)!;
    assert.deepEqual({ pipeline: replay.body.pipeline, decision_version: replay.body.decision.decision_version, decision: replay.body.decision.decision }, {
      pipeline: instance.name,
      decision_version: 2,
      decision: 'block',
    });
    // The failures on the way: each retried, the 429 after its Retry-After (1 s).
    assert.equal(receiver.attemptsOf(`${failsOnce}:1`).length, 2);
    assert.equal(receiver.attemptsOf(`${timesOutOnce}:1`).length, 2);
    const throttled = receiver.attemptsOf(`${throttledOnce}:1`);
    assert.equal(throttled.length, 2);
    assert.ok(throttled[1]!.at - throttled[0]!.at >= 950, `retried ${throttled[1]!.at - throttled[0]!.at} ms after a 429 with Retry-After: 1`);
    assert.equal(receiver.attemptsOf(`${alwaysFails}:1`).length, 4, 'SLUICE_WEBHOOK_MAX_ATTEMPTS');
    assert.equal(receiver.attemptsOf(`${staleAfterNewer}:2`).length, 0, 'a lower version after a higher one is never sent');

    // The dead letter: the original bytes and key, the contract's headers, stage webhook.
    assert.equal(dlq.messages.length, 1);
    const letter = dlq.messages[0]!;
    assert.equal(letter.key, `${prefix}-u3`);
    assert.deepEqual(letter.raw, bytesOf.get(`${alwaysFails}:1`));
    assert.equal(letter.headers['dlq.stage'], 'webhook');
    assert.equal(letter.headers['dlq.reason'], 'DELIVERY_FAILED');
    assert.equal(letter.headers['dlq.event_id'], alwaysFails);
    assert.equal(letter.headers['dlq.source.topic'], instance.topic('decided'));
    assert.equal(letter.headers['dlq.webhook.attempts'], '4');
    assert.equal(letter.headers['dlq.webhook.status'], '500');
    assert.match(letter.headers['dlq.message'] ?? '', /after 4 attempt/);
    assert.ok(Number(letter.headers['dlq.failed_at']) >= NOW);

    // The metrics say the same.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const counter = (outcome: string) => Number(new RegExp(`^sluice_webhook_decisions_total\\{[^}]*outcome="${outcome}"[^}]*\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
    assert.equal(counter('delivered'), expected.length);
    assert.equal(counter('dead_lettered'), 1);
    assert.equal(counter('superseded'), 1);
    assert.match(metrics, /^sluice_webhook_requests_total\{[^}]*status="429"[^}]*\} 1$/m);
    assert.match(metrics, /^sluice_webhook_requests_total\{[^}]*status="timeout"[^}]*\} 1$/m);

    // `sluice dlq redrive` leaves the webhook's dead letter alone (it would decide the event again).
    const plan = sluiceSync(['dlq', 'redrive', '--pipeline', instance.name, '--json']);
    assert.equal(plan.status, 0, plan.stderr);
    assert.deepEqual(JSON.parse(plan.stdout).plan, {
      selected: 0,
      by_reason: {},
      by_source_topic: {},
      already_redriven: 0,
      failed_after_redrive: 0,
      webhook_skipped: 1,
    });
  });

  it('after a restart delivers only what is new: the committed offsets hold', async () => {
    assert.equal(await stopSink(sink), 0, 'SIGTERM: a clean exit');
    const requestsBefore = receiver.received.length;
    const acceptedBefore = receiver.accepted.length;
    await write([{ key: `${prefix}-u0`, eventId: id(0, 99), version: 1 }]);
    sink = spawnWebhookSink(['--pipeline', instance.name, '--url', receiver.url, '--secret-env', 'HOOK_SECRET'], { HOOK_SECRET: SECRET, SLUICE_METRICS_PORT: '0' });
    await sink.running;
    await waitFor('the new decision accepted', () => receiver.accepted.includes(`${id(0, 99)}:1`), { timeoutMs: 60_000 });
    assert.deepEqual(receiver.accepted.slice(acceptedBefore), [`${id(0, 99)}:1`]);
    assert.deepEqual(receiver.received.slice(requestsBefore).map((r) => r.key), [`${id(0, 99)}:1`], 'no earlier decision was sent again');
    assert.equal(dlq.messages.length, 1);
  });

  it('on SIGTERM with a request hanging, abandons it after the grace, exits cleanly, commits nothing of it, and delivers it after a restart', async () => {
    assert.equal(await stopSink(sink), 0);
    const stuck = `${id(1, 99)}:1`;
    hangingKeys.add(stuck);
    await write([{ key: `${prefix}-u1`, eventId: id(1, 99), version: 1 }]);
    const env = { HOOK_SECRET: SECRET, SLUICE_METRICS_PORT: '0', SLUICE_WEBHOOK_TIMEOUT_MS: '600000', SLUICE_WEBHOOK_STOP_GRACE_MS: '300' };
    sink = spawnWebhookSink(['--pipeline', instance.name, '--url', receiver.url, '--secret-env', 'HOOK_SECRET'], env);
    await sink.running;
    await waitFor('the receiver to hold the request', () => receiver.attemptsOf(stuck).length === 1, { timeoutMs: 60_000 });
    assert.equal(await stopSink(sink), 0, 'SIGTERM with a request in flight: still a clean exit');
    assert.match(sink.output(), /stopping: delivering what is in hand/);
    assert.equal(uncommitted(await sinkLag()), 1n, 'the abandoned decision\'s offset is not committed');

    hangingKeys.delete(stuck);
    sink = spawnWebhookSink(['--pipeline', instance.name, '--url', receiver.url, '--secret-env', 'HOOK_SECRET'], env);
    await sink.running;
    await waitFor('the abandoned decision delivered after the restart', () => receiver.accepted.includes(stuck), { timeoutMs: 60_000 });
    assert.equal(receiver.accepted.filter((k) => k === stuck).length, 1);
    await waitFor(
      'every offset committed again',
      async () => uncommitted(await sinkLag()) === 0n,
      { timeoutMs: 60_000 },
    );
    assert.equal(await stopSink(sink), 0);
  });
});
