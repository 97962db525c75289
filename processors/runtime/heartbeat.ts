/**
 * Instance heartbeats: every stage process writes what its own metrics say
 * (records, dead letters, errors, transaction aborts, held partitions) to the
 * compacted `sluice.instances` topic every few seconds, keyed by instance, and
 * a tombstone when it stops. `sluice status` reads it to show, per stage, the
 * errors and aborts of the instances running now, without reaching into each
 * process's metrics port (which an operator's laptop often cannot).
 *
 * Best effort by design: a heartbeat that cannot be written is logged (at most
 * every minute) and never slows or stops the stage.
 */
import { hostname } from 'node:os';
import type { Counter, Gauge } from 'prom-client';
import { openProducer, type PlainMessage } from '../../connectors/kafka/admin.ts';
import { followTopic } from '../../connectors/kafka/follow.ts';
import { INSTANCES_TOPIC } from '../../lib/contracts.ts';
import type { Logger } from '../../lib/log.ts';
import { throttledLog } from '../../lib/retry.ts';

/** How often a process writes its heartbeat. */
export const HEARTBEAT_INTERVAL_MS = 5_000;
/** An instance whose last heartbeat is older than this is taken for gone (killed without a tombstone). */
export const HEARTBEAT_STALE_MS = 30_000;

/** One instance's heartbeat, the JSON value on `sluice.instances`. */
export interface Heartbeat {
  pipeline: string;
  process: string;
  instance: string;
  started_at: number;
  updated_at: number;
  /** Since the instance started. */
  records_in: number;
  dead_letters: number;
  /** Failed attempts (registry or broker errors, aborted transactions), each retried. */
  errors: number;
  transaction_aborts: number;
  /** When it last committed a transaction (ms), 0 before its first. */
  last_commit_at: number;
  /** Input partitions it holds: every one (`all`), or the circuit breaker's. */
  held: 'all' | number[];
}

const heartbeatKey = (h: Pick<Heartbeat, 'pipeline' | 'process' | 'instance'>) => `${h.pipeline}/${h.process}/${h.instance}`;

async function total(counter: Counter): Promise<number> {
  return (await counter.get()).values.reduce((sum, v) => sum + v.value, 0);
}

/** Starts writing heartbeats; the returned function writes the tombstone and stops. */
export async function startHeartbeat(args: {
  brokers: string[];
  pipeline: string;
  process: string;
  logger: Logger;
  counters: { recordsIn: Counter; deadLetters: Counter; retries: Counter; transactionAborts: Counter; lastProgress: Gauge };
  held(): 'all' | number[];
  intervalMs?: number;
}): Promise<() => Promise<void>> {
  const failures = throttledLog(args.logger, 60_000);
  const identity = { pipeline: args.pipeline, process: args.process, instance: `${hostname()}:${process.pid}` };
  const startedAt = Date.now();
  const producer = await openProducer(args.brokers, `sluice.${args.pipeline}.${args.process}.heartbeat`);
  const send = (message: PlainMessage) =>
    producer.send(INSTANCES_TOPIC, [message]).catch((error) => failures.warn({ err: error, topic: INSTANCES_TOPIC }, 'heartbeat not written (sluice status will not show this instance\'s errors); is the topic created? sluice topics create'));
  const beat = async () => {
    const heartbeat: Heartbeat = {
      ...identity,
      started_at: startedAt,
      updated_at: Date.now(),
      records_in: await total(args.counters.recordsIn),
      dead_letters: await total(args.counters.deadLetters),
      errors: await total(args.counters.retries),
      transaction_aborts: await total(args.counters.transactionAborts),
      last_commit_at: Math.round(((await args.counters.lastProgress.get()).values[0]?.value ?? 0) * 1_000),
      held: args.held(),
    };
    await send({ key: heartbeatKey(identity), value: JSON.stringify(heartbeat) });
  };
  let beating = beat();
  const timer = setInterval(() => {
    beating = beating.then(beat);
  }, args.intervalMs ?? HEARTBEAT_INTERVAL_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await beating;
    await send({ key: heartbeatKey(identity), value: null });
    await producer.close().catch(() => {});
  };
}

/** The heartbeats on the topic now, of live instances (tombstoned and stale ones left out). */
export async function readHeartbeats(args: { brokers: string[]; logger: Logger; now: number }): Promise<Heartbeat[]> {
  const latest = new Map<string, Heartbeat | null>();
  const follower = await followTopic({
    brokers: args.brokers,
    topic: INSTANCES_TOPIC,
    clientId: 'sluice-status-instances',
    logger: args.logger,
    onMessage: ({ key, value }) => {
      if (key === null) return;
      try {
        latest.set(key, value === null ? null : (JSON.parse(value.toString('utf8')) as Heartbeat));
      } catch {
        latest.delete(key); // not ours to judge: a foreign record is ignored
      }
    },
  });
  try {
    await follower.caughtUp;
  } finally {
    await follower.stop();
  }
  return [...latest.values()].filter((h): h is Heartbeat => h !== null && args.now - h.updated_at <= HEARTBEAT_STALE_MS);
}
