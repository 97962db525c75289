/**
 * The monitor's must-show: a live signup-risk instance (validate, score and
 * decide as processes, the ClickHouse sink, `sluice monitor` with 5 s windows)
 * fed in real time from the project's generator at 100 events/s. First a
 * stationary stream for 30 windows, which must raise no alert at all; then one
 * fault after another, each starting at a window boundary, which must raise an
 * alert of the right kind and subject within two windows of its onset and
 * resolve it within three windows after the fault is removed:
 *
 * - the IP-country mix shifts (half of the signups come from IPs in one
 *   country): feature_drift on ip_country_mismatch. The champion's card holds
 *   no per-country reference, so the country mix is seen through the feature
 *   the model reads from it;
 * - signups_from_ip_24h shifted up by 10: feature_drift on its feature;
 * - ip_country missing from every event: data_quality on ip_country;
 * - the input rate cut to a tenth: volume_drop on the raw topic;
 * - the decide process stopped: stall (or lag_growth) on decide;
 * - a champion that scores everything alike (a constant ONNX graph promoted
 *   with `sluice model promote`, rolled back with `sluice model rollback`):
 *   output_collapse or score_drift on score;
 * - 30% malformed events: dead_letter_spike on MALFORMED_PAYLOAD.
 *
 * Every alert must arrive on the `sluice.alerts` topic and in `sluice alerts
 * list --json` with the pipeline's owners and an existing runbook. The
 * detection delays, resolution delays and false alarms are printed as one JSON
 * line (`monitor_faults`) for the closing note. Alerts other than the fault's
 * own that a fault explains (the score drifting when a feature does, the
 * `all` dead-letter subject beside the reason) are companions, listed per
 * fault; any other alert is a false alarm.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnSink, type StageProcess } from '../../cli/processes.ts';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { TABLES } from '../../connectors/clickhouse/schema.ts';
import { followTopic, type Follower } from '../../connectors/kafka/follow.ts';
import { openProducer } from '../../connectors/kafka/admin.ts';
import { MODELS_ROOT } from '../../connectors/models/store.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { createLogger } from '../../lib/log.ts';
import { ALERTS_TOPIC, type Alert } from '../../monitor/alerts.ts';
import { envelopeBytes, generateSignups, type RawSignupEnvelope } from '../../pipelines/signup-risk/generator.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { connections, type SluiceRun, sluiceAsync, sluiceSync, waitFor } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

const WINDOW_MS = 5_000;
/** The sink writes within 200 ms; 2 s leaves room for a loaded machine. */
const GRACE = '2s';
/** 100 events/s: 500 per window, well above the 200 a drift verdict needs, and 50 when cut to a tenth. */
const SPACING_MS = 10;
const STATIONARY_WINDOWS = 30;
const KIND = 'signup-risk';
const CONSTANT = 'signup-risk-fault-constant';
const ROOT = new URL('../../', import.meta.url);
const quiet = createLogger({ component: 'test' }, 'error');

// ---------------------------------------------------------------------------
// A constant model: an ONNX graph that ignores its input.

/** Protocol-buffer wire format, just enough for an ONNX ModelProto. */
const pb = {
  varint(value: number): Buffer {
    const out: number[] = [];
    let v = BigInt(value);
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) byte |= 0x80;
      out.push(byte);
    } while (v > 0n);
    return Buffer.from(out);
  },
  int(field: number, value: number): Buffer {
    return Buffer.concat([pb.varint(field << 3), pb.varint(value)]);
  },
  bytes(field: number, payload: Buffer): Buffer {
    return Buffer.concat([pb.varint((field << 3) | 2), pb.varint(payload.length), payload]);
  },
  str(field: number, text: string): Buffer {
    return pb.bytes(field, Buffer.from(text, 'utf8'));
  },
};
const FLOAT = 1;
function tensor(name: string, dims: number[], values: number[]): Buffer {
  const raw = Buffer.alloc(values.length * 4);
  for (const [i, v] of values.entries()) raw.writeFloatLE(v, i * 4);
  return Buffer.concat([...dims.map((d) => pb.int(1, d)), pb.int(2, FLOAT), pb.str(8, name), pb.bytes(9, raw)]);
}
function valueInfo(name: string, width: number): Buffer {
  const dims = Buffer.concat([pb.bytes(1, pb.str(2, 'N')), pb.bytes(1, pb.int(1, width))]);
  const tensorType = Buffer.concat([pb.int(1, FLOAT), pb.bytes(2, dims)]);
  return Buffer.concat([pb.str(1, name), pb.bytes(2, pb.bytes(1, tensorType))]);
}
function node(op: string, inputs: string[], output: string): Buffer {
  return Buffer.concat([...inputs.map((i) => pb.str(1, i)), pb.str(2, output), pb.str(3, output), pb.str(4, op)]);
}

/**
 * probabilities = features · 0 + [1 − p, p]: every input scores p. The shape a
 * broken export takes when the trees are lost and only the bias is left.
 */
function constantOnnx(features: number, p: number, input: string, output: string): Buffer {
  const graph = Buffer.concat([
    pb.bytes(1, node('MatMul', [input, 'zero_weights'], 'zeros')),
    pb.bytes(1, node('Add', ['zeros', 'bias'], output)),
    pb.str(2, 'constant'),
    pb.bytes(5, tensor('zero_weights', [features, 2], Array(features * 2).fill(0))),
    pb.bytes(5, tensor('bias', [2], [1 - p, p])),
    pb.bytes(11, valueInfo(input, features)),
    pb.bytes(12, valueInfo(output, 2)),
  ]);
  const opset = Buffer.concat([pb.str(1, ''), pb.int(2, 17)]);
  return Buffer.concat([pb.int(1, 8), pb.str(2, 'sluice-test'), pb.bytes(7, graph), pb.bytes(8, opset)]);
}

/**
 * Writes the constant version beside a copy of the champion in `store`. Its
 * card is the champion's (a broken export whose card was written from the
 * training run), with its own checksum and reference examples, marked drill
 * so that promote asks for --drill.
 */
async function writeConstantVersion(store: string, champion: string): Promise<void> {
  const card = JSON.parse(await readFile(join(store, KIND, champion, 'card.json'), 'utf8')) as {
    features: string[];
    onnx: { input: string; output: string; sha256: string };
    reference: { examples: { rows: number[][]; probabilities: number[][] } };
  };
  const p = 0.3;
  const bytes = constantOnnx(card.features.length, p, card.onnx.input, card.onnx.output);
  const probabilities = [Math.fround(1 - p), Math.fround(p)];
  const constant = {
    ...card,
    version: CONSTANT,
    drill: true,
    onnx: { ...card.onnx, sha256: createHash('sha256').update(bytes).digest('hex') },
    reference: { ...card.reference, examples: { ...card.reference.examples, probabilities: card.reference.examples.rows.map(() => probabilities) } },
  };
  await cp(join(store, KIND, champion), join(store, KIND, CONSTANT), { recursive: true });
  await writeFile(join(store, KIND, CONSTANT, 'model.onnx'), bytes);
  await writeFile(join(store, KIND, CONSTANT, 'card.json'), JSON.stringify(constant, null, 2));
}

// ---------------------------------------------------------------------------
// Faults.

interface Fault {
  name: string;
  /** The alert it must raise: any one of these kind:subject. */
  expect: string[];
  /** Alerts it explains beside the expected one (kind:subject). */
  companions: string[];
  /** Changes a raw event in place, or replaces its bytes (null: the event is not sent). */
  event?: (envelope: RawSignupEnvelope, index: number) => Buffer | null | undefined;
  /** Starts the fault (at the onset boundary) and removes it. */
  start?: () => Promise<void>;
  stop?: () => Promise<void>;
}

interface FaultResult {
  fault: string;
  alert: string | null;
  detected_in_windows: number | null;
  resolved_in_windows: number | null;
  companions: string[];
  unexplained: string[];
  error?: string;
}

const windowOf = (ms: number) => Math.floor(ms / WINDOW_MS);
const startOf = (w: number) => w * WINDOW_MS;
const key = (a: Pick<Alert, 'kind' | 'subject'>) => `${a.kind}:${a.subject}`;

describe('sluice monitor on live traffic with injected faults', () => {
  let instance: PipelineInstance;
  let sink: StageProcess;
  let monitor: SluiceRun;
  let store: string;
  let env: Record<string, string>;
  let follower: Follower;
  let producer: Awaited<ReturnType<typeof openProducer>>;
  let traffic: Promise<void> = Promise.resolve();
  let trafficStopped = false;
  let t0 = 0;
  /** Fault intervals in event time: an event is changed by the faults whose interval holds its occurred_at. */
  const active: Array<{ fault: Fault; fromMs: number; toMs: number }> = [];
  /** Every alert state seen on sluice.alerts for the instance, in order. */
  const states: Alert[] = [];
  const clickhouse = createClickHouse({ url: connections.clickhouseUrl });

  /** Produces every event whose occurred_at has come, 100 per second, until stopped. */
  async function runTraffic(name: string): Promise<void> {
    let next = 0;
    while (!trafficStopped) {
      const due = Math.floor((Date.now() - t0) / SPACING_MS) + 1 - next;
      if (due > 0) {
        const messages = [];
        for (const signup of generateSignups({ seed: 9, count: due, startMs: t0, spacingMs: SPACING_MS, firstIndex: next, idPrefix: name })) {
          let value: Buffer | null = null;
          for (const { fault } of active.filter((a) => signup.occurredAtMs >= a.fromMs && signup.occurredAtMs < a.toMs)) {
            const changed = fault.event?.(signup.envelope, signup.index);
            if (changed === null) value = Buffer.alloc(0);
            else if (changed !== undefined) value = changed;
          }
          if (value?.length === 0) continue;
          messages.push({ key: signup.key, value: value ?? envelopeBytes(signup.envelope) });
        }
        next += due;
        await producer.send(instance.topic('raw'), messages);
      }
      // Pacing of a producer, not a wait for a result: events leave within 100 ms of their occurred_at.
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  before(async () => {
    store = await mkdtemp(join(tmpdir(), 'sluice-monitor-faults-'));
    const champion = (await readFile(join(MODELS_ROOT, KIND, 'ACTIVE'), 'utf8')).trim();
    await cp(join(MODELS_ROOT, KIND, champion), join(store, KIND, champion), { recursive: true });
    await writeFile(join(store, KIND, 'ACTIVE'), `${champion}\n`);
    await writeConstantVersion(store, champion);
    env = { SLUICE_MODELS_DIR: store, SLUICE_ACTOR: 'it-monitor-faults' };

    await migrate(clickhouse, { url: connections.clickhouseUrl });
    instance = await PipelineInstance.create('monfault', env);
    sink = spawnSink({ pipeline: instance.name, env: { SLUICE_SINK_MAX_BATCH_WAIT_MS: '200' }, logFile: join(stackPaths().logs, 'tests', `${instance.name}.sink.log`) });
    await Promise.all([instance.start(), sink.running]);
    producer = await openProducer(connections.kafkaBrokers, `${instance.name}.test`);
    follower = await followTopic({
      brokers: connections.kafkaBrokers,
      topic: ALERTS_TOPIC,
      clientId: `${instance.name}.alerts`,
      logger: quiet,
      onMessage: (m) => {
        if (m.key?.startsWith(`${instance.name}/`) && m.value) states.push(JSON.parse(m.value.toString('utf8')) as Alert);
      },
    });
  });

  after(async () => {
    trafficStopped = true;
    await traffic.catch(() => {});
    monitor?.kill('SIGKILL');
    sink?.kill('SIGKILL');
    await sink?.exited;
    await producer?.close().catch(() => {});
    await follower?.stop();
    await instance?.stop();
    if (instance) {
      await deletePipelineRows(clickhouse, instance.name).catch(() => {});
      for (const table of [TABLES.monitorWindows, TABLES.alerts]) await clickhouse.command({ query: `ALTER TABLE ${table} DELETE WHERE pipeline = ${quote(instance.name)}` }).catch(() => {});
    }
    await clickhouse.close();
    if (store) await rm(store, { recursive: true, force: true });
  });

  it('stays quiet on a stationary stream, and flags and clears each fault within two and three windows', async () => {
    const name = instance.name;
    const raw = `${name}.raw`;
    /** The first window boundary at least a second away. */
    const nextBoundary = () => startOf(windowOf(Date.now() + 1_000) + 1);
    const until = (ms: number) => waitFor(`the clock to reach ${new Date(ms).toISOString()}`, () => Date.now() >= ms, { timeoutMs: ms - Date.now() + 5_000, intervalMs: 20 });
    const firing = (fromMs: number) => states.filter((a) => a.status === 'firing' && a.window_start >= fromMs);
    const resolvedState = (id: string) => states.find((a) => a.alert_id === id && a.status === 'resolved');

    t0 = nextBoundary();
    traffic = runTraffic(name);
    monitor = sluiceAsync(['monitor', '--pipeline', name, '--window', `${WINDOW_MS / 1000}s`, '--grace', GRACE, '--metrics-port', '0'], env);

    // The stationary run: 30 windows judged from t0, with verdicts (not "too few events").
    const firstFault = t0 + STATIONARY_WINDOWS * WINDOW_MS;
    await until(firstFault);
    const judged = await waitFor('the 30 stationary windows judged', async () => {
      const rows = await queryRows<{ windows: string }>(
        clickhouse,
        `SELECT uniqExact(window_start_ms) AS windows FROM ${TABLES.monitorWindows}
         WHERE pipeline = ${quote(name)} AND window_ms = ${WINDOW_MS} AND check = 'feature_drift' AND status = 'ok' AND window_start_ms >= ${t0} AND window_start_ms < ${firstFault}`,
      );
      const n = Number(rows[0]?.windows ?? 0);
      return n >= STATIONARY_WINDOWS && n;
    }, { timeoutMs: 5 * WINDOW_MS });
    const faults: Fault[] = [
      {
        name: 'ip country mix shifted (half of the IPs in one country)',
        expect: ['feature_drift:ip_country_mismatch'],
        companions: ['score_drift:score', 'feature_drift:ip_country_missing', 'output_collapse:decision'],
        event: (e, i) => {
          if (i % 2 === 0 && e.payload.ip_country !== undefined) e.payload.ip_country = 'NL';
          return undefined;
        },
      },
      {
        name: 'signups_from_ip_24h shifted up by 10',
        expect: ['feature_drift:signups_from_ip_24h_log1p'],
        companions: ['score_drift:score', 'data_quality:signups_from_ip_24h_log1p', 'output_collapse:decision'],
        event: (e) => {
          if (typeof e.payload.signups_from_ip_24h === 'number') e.payload.signups_from_ip_24h += 10;
          return undefined;
        },
      },
      {
        name: 'ip_country missing from every event',
        expect: ['data_quality:ip_country'],
        companions: ['feature_drift:ip_country_missing', 'feature_drift:ip_country_mismatch', 'score_drift:score'],
        event: (e) => {
          delete e.payload.ip_country;
          return undefined;
        },
      },
      {
        name: 'input rate cut to a tenth',
        expect: [`volume_drop:${raw}`],
        companions: [],
        event: (_, i) => (i % 10 === 0 ? undefined : null),
      },
      {
        name: 'decide process stopped',
        expect: ['stall:decide', 'lag_growth:decide'],
        companions: ['stall:decide', 'lag_growth:decide'],
        start: async () => {
          await instance.stopStage('decide');
        },
        stop: async () => {
          await instance.startStage('decide').running;
        },
      },
      {
        name: 'a champion that scores everything alike',
        expect: ['output_collapse:score', 'score_drift:score'],
        companions: ['output_collapse:score', 'score_drift:score', 'output_collapse:decision'],
        start: async () => {
          // Not sluiceSync: the traffic must keep flowing meanwhile.
          const promoted = await sluiceAsync(['model', 'promote', CONSTANT, '--pipeline', name, '--drill', '--reason', 'fault test'], env).exited;
          assert.equal(promoted.status, 0, promoted.stderr);
        },
        stop: async () => {
          const rolledBack = await sluiceAsync(['model', 'rollback', '--pipeline', name, '--reason', 'fault removed'], env).exited;
          assert.equal(rolledBack.status, 0, rolledBack.stderr);
        },
      },
      {
        name: '30% malformed events',
        expect: ['dead_letter_spike:MALFORMED_PAYLOAD'],
        companions: ['dead_letter_spike:all'],
        event: (e, i) => {
          if (i % 10 >= 3) return undefined;
          const json = JSON.stringify(e);
          return Buffer.from(json.slice(0, Math.floor(json.length / 2)), 'utf8');
        },
      },
    ];

    const results: FaultResult[] = [];
    let firstOnset = 0;
    for (const fault of faults) {
      const result: FaultResult = { fault: fault.name, alert: null, detected_in_windows: null, resolved_in_windows: null, companions: [], unexplained: [] };
      results.push(result);
      const onset = nextBoundary();
      firstOnset ||= onset;
      const interval = { fault, fromMs: onset, toMs: Number.POSITIVE_INFINITY };
      active.push(interval);
      let started = false;
      let primary: Alert | undefined;
      try {
        if (fault.start) {
          // The decide stage is stopped just before the boundary, so that none of the onset window's events is decided.
          await until(fault.name.startsWith('decide') ? onset - 500 : onset);
          await fault.start();
          started = true;
        }
        primary = await waitFor(`an alert of ${fault.expect.join(' or ')} (${fault.name})`, () => firing(onset).find((a) => fault.expect.includes(key(a))), { timeoutMs: 6 * WINDOW_MS });
        result.alert = key(primary);
        result.detected_in_windows = windowOf(primary.window_start) - windowOf(onset) + 1;
        const removal = nextBoundary();
        interval.toMs = removal;
        if (started) {
          await until(removal);
          started = false;
          await fault.stop!();
        }
        const resolved = await waitFor(`${key(primary)} resolved (${fault.name})`, () => resolvedState(primary!.alert_id), { timeoutMs: 8 * WINDOW_MS });
        result.resolved_in_windows = windowOf(resolved.window_start) - windowOf(removal) + 1;
        // Whatever else the fault raised must clear too before the next one starts.
        await waitFor(`every alert of "${fault.name}" resolved`, () => firing(onset).every((a) => resolvedState(a.alert_id) !== undefined), { timeoutMs: 8 * WINDOW_MS });
      } catch (error) {
        result.error = error instanceof Error ? error.message : String(error);
        if (interval.toMs === Number.POSITIVE_INFINITY) interval.toMs = nextBoundary();
        if (started) await fault.stop!();
      }
      for (const a of firing(onset)) {
        if (a.alert_id === primary?.alert_id) continue;
        if (fault.companions.includes(key(a)) || fault.expect.includes(key(a))) result.companions.push(key(a));
        else result.unexplained.push(`${key(a)}@w${(a.window_start - onset) / WINDOW_MS}`);
      }
    }
    trafficStopped = true;
    await traffic;
    // Everything that fired before the first fault: the stationary run (and the warm-up window before t0).
    const falseAlarms = states.filter((a) => a.status === 'firing' && a.window_start < firstOnset).map((a) => `${key(a)}@w${(a.window_start - t0) / WINDOW_MS}`);

    console.log(JSON.stringify({ monitor_faults: { window_ms: WINDOW_MS, events_per_window: WINDOW_MS / SPACING_MS, stationary_windows_judged: judged, false_alarms_stationary: falseAlarms, faults: results } }));

    assert.deepEqual(falseAlarms, [], 'a stationary stream raises no alert');
    for (const r of results) {
      assert.equal(r.error, undefined, `${r.fault}: ${r.error}`);
      assert.ok(r.detected_in_windows !== null && r.detected_in_windows <= 2, `${r.fault}: detected in ${r.detected_in_windows} windows`);
      assert.ok(r.resolved_in_windows !== null && r.resolved_in_windows <= 3, `${r.fault}: resolved ${r.resolved_in_windows} windows after removal`);
      assert.deepEqual(r.unexplained, [], `${r.fault}: alerts the fault does not explain`);
    }

    // Every alert state on the topic is the one `sluice alerts list --json` holds, with the owners and an existing runbook.
    const list = sluiceSync(['alerts', 'list', '--pipeline', name, '--json']);
    assert.equal(list.status, 0, list.stderr);
    const listed = new Map((JSON.parse(list.stdout) as Alert[]).map((a) => [a.alert_id, a]));
    const owners = pipelineByName(name).owners;
    const latest = new Map(states.map((a) => [a.alert_id, a]));
    assert.ok(latest.size >= faults.length);
    for (const [id, state] of latest) {
      assert.deepEqual(listed.get(id), state, `${id}: the topic's latest state is the listed one`);
      assert.deepEqual(state.owners, { team: owners.team, oncall: owners.oncall });
      assert.ok(existsSync(new URL(state.runbook, ROOT)), `${id}: its runbook ${state.runbook} exists`);
    }
    monitor.kill('SIGTERM');
    assert.equal((await monitor.exited).status, 0);
  });
});
