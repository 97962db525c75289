/**
 * The schema codec a stage decodes its input and encodes its outputs with, in
 * the Confluent wire format (magic byte 0, 4-byte schema id, Avro body). Two
 * implementations: the registry adapter (connectors/registry/registry.ts) and
 * an in-memory codec built from a pipeline's `.avsc` files
 * (connectors/registry/memory.ts), which lets tests run stages without a broker
 * or a registry.
 */

/** What a codec made of a framed value; never thrown for bad data. */
export type FramedDecode =
  | { kind: 'decoded'; value: unknown; schemaId: number }
  | { kind: 'unknown-schema'; schemaId: number }
  | { kind: 'undecodable'; message: string };

/** Top-level fields of a record that a reader never uses (see SchemaCodec.decodeSync). */
export type SkippedFields = readonly string[];

/** True when a value carries the Confluent wire format's framing. */
export const isFramed = (value: Buffer | null): value is Buffer => value !== null && value.length >= 5 && value[0] === 0;

export interface SchemaCodec {
  /**
   * Resolves the schema id of every framed value, so that `decodeSync` never
   * waits. Throws a retriable REGISTRY_UNAVAILABLE when the registry cannot be
   * asked: an outage must never look like bad data.
   */
  prefetch(values: Iterable<Buffer | null>): Promise<void>;
  /**
   * Decodes a framed value with the schemas already resolved. `skipped` names
   * top-level fields the caller never reads: their bytes are stepped over
   * (Avro schema resolution against the writer's schema without them), so
   * their values are never built.
   */
  decodeSync(value: Buffer, skipped?: SkippedFields): FramedDecode;
  /** A synchronous encoder for the latest schema of `subject`; SCHEMA_NOT_REGISTERED when it has none. */
  encoderFor(subject: string): Promise<(value: unknown) => Buffer>;
}
