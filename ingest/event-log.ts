/**
 * The port through which the gateway writes to Kafka: events and their
 * idempotency records, atomically. The Kafka implementation is kafka-log.ts;
 * tests without a broker use an in-memory one.
 */
import type { Accepted } from './idempotency.ts';

export interface OutgoingEvent {
  topic: string;
  key: string;
  value: Buffer;
  /** `<pipeline>/<event_id>`: the key of its record on the idempotency topic. */
  idempotencyKey: string;
  /** Kept with a document's idempotency record, so a duplicate upload can answer what the first did. */
  document?: { pages: number | null; textTruncated: boolean };
}

export interface EventLog {
  /**
   * Produces the events, and one idempotency record for each, in one Kafka
   * transaction, and resolves with where each event went once it is
   * committed: either every event of the call is committed or none is
   * visible to read-committed consumers. Rejects with an IngestError:
   * KAFKA_UNAVAILABLE when Kafka has not acknowledged within the bound
   * (retry with the same event ids: if a commit did land at the last moment,
   * the retry answers `duplicate` with its offsets), OVERLOADED when too much
   * is already waiting.
   */
  append(events: readonly OutgoingEvent[]): Promise<Accepted[]>;
  /** The partition count of a topic, or undefined when it does not exist. Rejects with KAFKA_UNAVAILABLE. */
  partitions(topic: string): Promise<number | undefined>;
  /** Ready to produce: connected and not replacing a producer after a failure. */
  health(): { ready: boolean; detail: string };
}
