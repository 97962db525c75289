/**
 * The schema registry adapter: the one place that talks to the registry and
 * to avsc. Ids are resolved once (at start, or once per unseen id); encoding
 * and decoding on the hot path are synchronous avsc calls on cached types,
 * framed by the registry client's own wire encoder (magic byte + schema id).
 */
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import wireDecoder from '@kafkajs/confluent-schema-registry/dist/wireDecoder.js';
import avsc from 'avsc';
import TimeoutMiddleware from 'mappersmith/middleware/timeout';
import { type FramedDecode, isFramed, type SchemaCodec, type SkippedFields } from '../../lib/codec.ts';
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import { oncePerObject } from '../../lib/once.ts';

// A CommonJS module compiled from TypeScript: its default export sits on `.default`.
const wireDecode = (wireDecoder as unknown as { default: (buffer: Buffer) => { registryId: number; payload: Buffer } }).default;

export type AvroType = avsc.Type;

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

/**
 * Every registry call gives up after this long: a registry that accepts
 * connections but never answers (overloaded, frozen) must surface as
 * REGISTRY_UNAVAILABLE, retried with backoff, not as a stage waiting forever.
 */
export const REGISTRY_TIMEOUT_MS = 10_000;

/** How long an id the registry did not know is taken as unknown before asking again. */
export const UNKNOWN_ID_TTL_MS = 30_000;

export type { FramedDecode } from '../../lib/codec.ts';
export { isFramed } from '../../lib/codec.ts';

/** avsc's cursor over the buffer a value is written into (internal to avsc): the argument of a type's `_write`, which {@link StringArrayType} overrides. */
interface Tap {
  writeFixed(bytes: Buffer, length: number): void;
}
const ArrayTypeBase = avsc.types.ArrayType as unknown as new (schema: unknown, opts: unknown) => avsc.types.ArrayType & { _write(tap: Tap, value: unknown): void };
/** A frozen array of strings' Avro bytes, encoded once: a stage writes the same array of names (score's feature names) in every record. */
const frozenArrayBytes = oncePerObject((array: readonly unknown[]) => encodeOnItsOwn(array));
const plainStringArray = avsc.Type.forSchema({ type: 'array', items: 'string' });

/**
 * An Avro array of strings. A frozen array is written as the bytes it was
 * first encoded to (it cannot have changed since); any other, item by item.
 * The bytes are those avsc writes either way.
 */
class StringArrayType extends ArrayTypeBase {
  override _write(tap: Tap, value: unknown): void {
    if (!Array.isArray(value) || !Object.isFrozen(value)) {
      super._write(tap, value);
      return;
    }
    const bytes = frozenArrayBytes(value);
    tap.writeFixed(bytes, bytes.length);
  }
}

/** The array's bytes, through a buffer of its own: `toBuffer` would reuse avsc's shared buffer, which the record being written holds. */
function encodeOnItsOwn(value: readonly unknown[]): Buffer {
  let buffer = Buffer.alloc(1_024);
  let end = plainStringArray.encode(value, buffer, 0);
  if (end < 0) {
    // Too small: avsc returns minus the bytes missing.
    buffer = Buffer.alloc(buffer.length - end);
    end = plainStringArray.encode(value, buffer, 0);
  }
  return buffer.subarray(0, end);
}

function isStringArraySchema(schema: unknown): boolean {
  if (typeof schema !== 'object' || schema === null) return false;
  const { type, items } = schema as { type?: unknown; items?: unknown };
  return type === 'array' && (items === 'string' || (typeof items === 'object' && items !== null && (items as { type?: unknown }).type === 'string' && Object.keys(items).length === 1));
}

export function avroType(schema: unknown): AvroType {
  // No logical-type classes: timestamp-millis stays a number of epoch ms.
  return avsc.Type.forSchema(schema as avsc.Schema, {
    wrapUnions: false,
    typeHook: (nested, opts) => (isStringArraySchema(nested) ? (new StringArrayType(nested, opts) as unknown as avsc.Type) : undefined),
  });
}

function registryStatus(error: unknown): number | undefined {
  const status = (error as { status?: unknown }).status;
  return typeof status === 'number' ? status : undefined;
}

export class SchemaCatalog implements SchemaCodec {
  readonly url: string;
  private readonly client: SchemaRegistry;
  private readonly types = new Map<number, AvroType>();
  /** Ids the registry did not know, and until when to believe it (epoch ms). */
  private readonly unknownUntil = new Map<number, number>();

  private readonly unknownIdTtlMs: number;

  constructor(url: string, options: { unknownIdTtlMs?: number } = {}) {
    this.url = url.replace(/\/+$/, '');
    this.unknownIdTtlMs = options.unknownIdTtlMs ?? UNKNOWN_ID_TTL_MS;
    // mappersmith ships separate ESM and CommonJS type declarations; the registry
    // client is typed against the CommonJS ones, the same function at run time.
    const timeout = TimeoutMiddleware(REGISTRY_TIMEOUT_MS) as unknown as NonNullable<ConstructorParameters<typeof SchemaRegistry>[0]['middlewares']>[number];
    this.client = new SchemaRegistry({ host: this.url, retry: { retries: 0 }, middlewares: [timeout] });
  }

  /**
   * Registers `schema` under `subject` with BACKWARD compatibility enforced.
   * Registering a schema already there returns its id; an incompatible one is
   * refused with SCHEMA_INCOMPATIBLE, naming the subject and the field.
   */
  async register(subject: string, schema: unknown): Promise<number> {
    const text = JSON.stringify(schema);
    avroType(schema); // a schema avsc cannot parse never reaches the registry
    let id: number;
    try {
      ({ id } = await this.client.register({ type: SchemaType.AVRO, schema: text }, { subject }));
    } catch (error) {
      const status = registryStatus(error);
      if (status === 409 || status === 422) {
        throw new SluiceError(
          'SCHEMA_INCOMPATIBLE',
          `Subject ${subject}: the new schema is not BACKWARD compatible with the registered one (${errorMessage(error)}). ` +
            'Give every added field a default and never remove or retype a field; see schemas/.',
          { cause: error },
        );
      }
      throw this.unavailable(`registering subject ${subject}`, error);
    }
    await this.setCompatibility('BACKWARD', subject);
    return id;
  }

  /** Sets the compatibility level globally (no subject) or for one subject. */
  async setCompatibility(level: 'BACKWARD' | 'FULL' | 'NONE', subject?: string): Promise<void> {
    const path = subject === undefined ? '/config' : `/config/${encodeURIComponent(subject)}`;
    let response: Response;
    try {
      response = await fetch(this.url + path, {
        method: 'PUT',
        headers: { 'content-type': CONTENT_TYPE },
        body: JSON.stringify({ compatibility: level }),
        signal: AbortSignal.timeout(REGISTRY_TIMEOUT_MS),
      });
    } catch (error) {
      throw this.unavailable(`setting compatibility for ${subject ?? 'the registry'}`, error);
    }
    if (!response.ok) {
      throw new SluiceError('REGISTRY_UNAVAILABLE', `Setting compatibility ${level} on ${path} failed: HTTP ${response.status} ${await response.text()}`);
    }
  }

  /** The latest id and type of a subject; SCHEMA_NOT_REGISTERED if it has none. */
  async latest(subject: string): Promise<{ id: number; type: AvroType }> {
    let id: number;
    try {
      id = await this.client.getLatestSchemaId(subject);
    } catch (error) {
      if (registryStatus(error) === 404) {
        throw new SluiceError(
          'SCHEMA_NOT_REGISTERED',
          `Subject ${subject} has no schema in the registry at ${this.url}. Run: npx sluice schemas register --pipeline ${/^(.+)\.(?:validated|scored|decided|review|feedback)-value$/.exec(subject)?.[1] ?? '<pipeline>'}`,
        );
      }
      throw this.unavailable(`looking up subject ${subject}`, error);
    }
    const type = await this.typeOf(id);
    if (type === undefined) throw new SluiceError('SCHEMA_NOT_REGISTERED', `Schema id ${id} of ${subject} vanished from the registry.`);
    return { id, type };
  }

  /**
   * The avsc type of a schema id, fetched once and cached; undefined when the
   * registry does not know the id. Throws REGISTRY_UNAVAILABLE (retriable) when
   * the registry cannot be asked: an outage must never look like bad data.
   */
  async typeOf(id: number): Promise<AvroType | undefined> {
    const cached = this.types.get(id);
    if (cached) return cached;
    if ((this.unknownUntil.get(id) ?? 0) > Date.now()) return undefined;
    try {
      const schema = await this.client.getSchema(id);
      const type = avroType(JSON.parse(JSON.stringify(schema)));
      this.types.set(id, type);
      return type;
    } catch (error) {
      if (registryStatus(error) === 404) {
        // Remembered briefly, so a stream of unknown ids does not ask per chunk,
        // yet a schema registered later is picked up without a restart.
        this.unknownUntil.set(id, Date.now() + this.unknownIdTtlMs);
        return undefined;
      }
      throw this.unavailable(`fetching schema id ${id}`, error);
    }
  }

  /** Resolves every framed value's schema id in a batch, so that decodeSync never waits. */
  async prefetch(values: Iterable<Buffer | null>): Promise<void> {
    const ids = new Set<number>();
    for (const value of values) {
      if (isFramed(value)) ids.add(value.readUInt32BE(1));
    }
    for (const id of ids) await this.typeOf(id);
  }

  /** Decodes a framed value with cached types only (call prefetch first). */
  decodeSync(value: Buffer, skipped?: SkippedFields): FramedDecode {
    return decodeFramed(value, (id) => this.types.get(id), skipped);
  }

  async encoderFor(subject: string): Promise<(value: unknown) => Buffer> {
    const { id, type } = await this.latest(subject);
    return framedEncoder(id, type);
  }

  /**
   * Checks that the URL serves the Confluent-compatible API: a registry that
   * cannot be reached is REGISTRY_UNAVAILABLE (retriable); one that answers 404
   * for `/subjects` is the wrong URL, a CONFIG_INVALID naming the variable.
   */
  async probe(variable = 'SCHEMA_REGISTRY_URL'): Promise<void> {
    let response: Response;
    try {
      response = await fetch(`${this.url}/subjects`, { signal: AbortSignal.timeout(REGISTRY_TIMEOUT_MS) });
    } catch (error) {
      throw this.unavailable('listing subjects', error);
    }
    await response.body?.cancel();
    if (response.status === 404) {
      throw new SluiceError(
        'CONFIG_INVALID',
        `${variable}=${this.url} does not serve the Confluent-compatible registry API (GET /subjects answered 404). ` +
          'For Apicurio Registry use its /apis/ccompat/v7 path; for Confluent Schema Registry its root URL.',
      );
    }
    if (!response.ok) throw this.unavailable('listing subjects', new Error(`HTTP ${response.status}`));
  }

  private unavailable(what: string, error: unknown): SluiceError {
    return new SluiceError('REGISTRY_UNAVAILABLE', `Schema registry at ${this.url} failed while ${what}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

/** Decodes a framed value with the types at hand (the registry's cache, or an in-memory codec's). */
export function decodeFramed(value: Buffer, typeOf: (id: number) => AvroType | undefined, skipped?: SkippedFields): FramedDecode {
  let framed: { registryId: number; payload: Buffer };
  try {
    framed = wireDecode(value);
  } catch (error) {
    return { kind: 'undecodable', message: `not in the registry wire format: ${errorMessage(error)}` };
  }
  const type = typeOf(framed.registryId);
  if (type === undefined) return { kind: 'unknown-schema', schemaId: framed.registryId };
  try {
    const projected = skipped === undefined ? undefined : projection(type, skipped);
    const decoded = projected ? projected.reader.fromBuffer(framed.payload, projected.resolver) : type.fromBuffer(framed.payload);
    return { kind: 'decoded', value: decoded, schemaId: framed.registryId };
  } catch (error) {
    return { kind: 'undecodable', message: `schema id ${framed.registryId}: ${errorMessage(error)}` };
  }
}

interface Projected {
  reader: AvroType;
  resolver: ReturnType<AvroType['createResolver']>;
}

/**
 * Per writer type, per list of skipped fields (by identity: a stage's list is
 * one constant, so nothing is built per record): the reader without them, or
 * null when the writer has none of them.
 */
const projections = new WeakMap<AvroType, Map<SkippedFields, Projected | null>>();

/**
 * The reader of `writer`'s records without the `skipped` top-level fields,
 * and its resolver: reading through it steps over those fields' bytes. Built
 * once per writer schema. A writer with none of the fields, or one whose
 * remaining fields do not stand alone (a named type defined only inside a
 * skipped field), is read whole.
 */
function projection(writer: AvroType, skipped: SkippedFields): Projected | null {
  let byFields = projections.get(writer);
  if (!byFields) {
    byFields = new Map();
    projections.set(writer, byFields);
  }
  let projected = byFields.get(skipped);
  if (projected === undefined) {
    projected = buildProjection(writer, skipped);
    byFields.set(skipped, projected);
  }
  return projected;
}

function buildProjection(writer: AvroType, skipped: SkippedFields): Projected | null {
  const schema = writer.schema() as { type?: string; fields?: Array<{ name: string }> };
  if (schema.type !== 'record' || !schema.fields) return null;
  const fields = schema.fields.filter((field) => !skipped.includes(field.name));
  if (fields.length === schema.fields.length) return null;
  try {
    const reader = avroType({ ...schema, fields });
    return { reader, resolver: reader.createResolver(writer) };
  } catch {
    return null;
  }
}

/** Magic byte and schema id, before the Avro body (Confluent's wire format). */
const HEADER_BYTES = 5;

/**
 * A synchronous encoder for one resolved schema id. The body is written into a
 * scratch buffer kept by the encoder, behind room for the header, and copied
 * once into the message: one allocation per message instead of three.
 */
export function framedEncoder(id: number, type: AvroType): (value: unknown) => Buffer {
  let scratch = Buffer.allocUnsafe(16_384);
  return (value) => {
    let end = type.encode(value, scratch, HEADER_BYTES);
    if (end < 0) {
      // Too small: avsc returns minus the bytes missing.
      scratch = Buffer.allocUnsafe((scratch.length - end) * 2);
      end = type.encode(value, scratch, HEADER_BYTES);
    }
    const framed = Buffer.allocUnsafe(end);
    framed[0] = 0;
    framed.writeInt32BE(id, 1);
    scratch.copy(framed, HEADER_BYTES, HEADER_BYTES, end);
    return framed;
  };
}
