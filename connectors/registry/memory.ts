/**
 * A schema codec held in memory, built from `.avsc` files: the same wire
 * format and Avro encoding as the registry adapter, with ids assigned here.
 * For the broker-free test driver and for tools that must not need a
 * registry; never for production traffic (ids are meaningless elsewhere).
 */
import type { FramedDecode, SchemaCodec, SkippedFields } from '../../lib/codec.ts';
import { SluiceError } from '../../lib/errors.ts';
import { type AvroType, avroType, decodeFramed, framedEncoder } from './registry.ts';

export class MemoryCodec implements SchemaCodec {
  private readonly types = new Map<number, AvroType>();
  private readonly subjects = new Map<string, number>();

  /** Registers `schema` under `subject` (a new id each time, like a new version); returns the id. */
  register(subject: string, schema: unknown): number {
    const id = this.types.size + 1;
    this.types.set(id, avroType(schema));
    this.subjects.set(subject, id);
    return id;
  }

  async prefetch(): Promise<void> {}

  decodeSync(value: Buffer, skipped?: SkippedFields): FramedDecode {
    return decodeFramed(value, (id) => this.types.get(id), skipped);
  }

  async encoderFor(subject: string): Promise<(value: unknown) => Buffer> {
    return this.encoderForSync(subject);
  }

  encoderForSync(subject: string): (value: unknown) => Buffer {
    const id = this.subjects.get(subject);
    if (id === undefined) throw new SluiceError('SCHEMA_NOT_REGISTERED', `Subject ${subject} is not in this in-memory codec.`);
    return framedEncoder(id, this.types.get(id)!);
  }
}
