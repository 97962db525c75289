/**
 * Where an event's end-to-end latency goes, hop by hop, for `npm run bench --
 * --hops`: read after the latency phase from the records' own timestamps, so
 * that timing the hops costs the measured run nothing.
 *
 * Each record's timestamp is its producer's (CreateTime): kafkajs stamps a
 * record when it encodes the Produce request that carries it. For a stage,
 * that is once the record is processed and its transaction is sending; the
 * load generator's is its send. So, per event:
 *
 *   raw        produced (occurred_at) → the generator's send of it
 *   validated  that send → validate's send of its output (includes the raw
 *              record's commit, validate's fetch, the wait for validate's
 *              transaction in flight, and the processing)
 *   scored     validate's send → score's send
 *   decided    score's send → decide's send
 *   readable   decide's send → the decision read by a read-committed consumer
 *              (decide's commit and the reader's fetch)
 *   raw_to_decided  the generator's send → the decision read
 *
 * In co-located mode one transaction writes validated, scored and decided
 * together: `validated` holds the whole processing, `scored` and `decided` are
 * about zero.
 */
import { percentile } from '../cli/traffic.ts';
import { followTopic } from '../connectors/kafka/follow.ts';
import { topicName } from '../lib/contracts.ts';
import type { Logger } from '../lib/log.ts';

export const HOP_TOPICS = ['raw', 'validated', 'scored', 'decided'] as const;
export type HopTopic = (typeof HOP_TOPICS)[number];
export const HOP_KEYS = ['raw', 'validated', 'scored', 'decided', 'readable', 'raw_to_decided'] as const;
export type HopKey = (typeof HOP_KEYS)[number];

/** Per topic: event id → the timestamp of its record there. */
export type SentAt = Record<HopTopic, ReadonlyMap<string, number>>;

/**
 * Reads each topic of `pipeline` from the beginning to its end now and keeps,
 * for every record whose event id starts with `idPrefix`, its timestamp (the
 * first record of an id, if a redelivery wrote it twice: read-committed
 * consumers see one).
 */
export async function readSentAt(args: {
  brokers: string[];
  pipeline: string;
  idPrefix: string;
  logger: Logger;
  /** The event id of a record on `topic`, or undefined if it has none. */
  eventIdOf(topic: HopTopic, value: Buffer): string | undefined;
}): Promise<SentAt> {
  const sentAt = {} as Record<HopTopic, Map<string, number>>;
  await Promise.all(
    HOP_TOPICS.map(async (topic) => {
      const times = new Map<string, number>();
      sentAt[topic] = times;
      const follower = await followTopic({
        brokers: args.brokers,
        topic: topicName(args.pipeline, topic),
        clientId: `sluice-bench-hops-${topic}`,
        logger: args.logger,
        onMessage: ({ value, timestampMs }) => {
          const id = value === null ? undefined : args.eventIdOf(topic, value);
          if (id?.startsWith(args.idPrefix) && !times.has(id)) times.set(id, timestampMs);
        },
      });
      try {
        await follower.caughtUp;
      } finally {
        await follower.stop();
      }
    }),
  );
  return sentAt;
}

export interface HopEvent {
  id: string;
  /** The event's occurred_at: when the generator made it. */
  occurredAt: number;
  /** When the benchmark read its decision. */
  readAt: number;
}

/** p50 and p99 of each hop over `events`; an event missing from a topic counts in no hop that needs it. */
export function hopLatencies(events: readonly HopEvent[], sentAt: SentAt): Record<HopKey, { p50: number; p99: number }> {
  const spans: Record<HopKey, number[]> = { raw: [], validated: [], scored: [], decided: [], readable: [], raw_to_decided: [] };
  const add = (hop: HopKey, from: number | undefined, to: number | undefined) => {
    if (from !== undefined && to !== undefined) spans[hop].push(to - from);
  };
  for (const { id, occurredAt, readAt } of events) {
    const raw = sentAt.raw.get(id);
    const validated = sentAt.validated.get(id);
    const scored = sentAt.scored.get(id);
    const decided = sentAt.decided.get(id);
    add('raw', occurredAt, raw);
    add('validated', raw, validated);
    add('scored', validated, scored);
    add('decided', scored, decided);
    add('readable', decided, readAt);
    add('raw_to_decided', raw, readAt);
  }
  return Object.fromEntries(HOP_KEYS.map((hop) => [hop, { p50: percentile(spans[hop], 50), p99: percentile(spans[hop], 99) }])) as Record<
    HopKey,
    { p50: number; p99: number }
  >;
}
