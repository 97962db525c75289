/**
 * The ingest API as a fastify application, built from its dependencies and
 * not listening (server.ts listens): tests build it with an in-memory event
 * log, the server with Kafka. Routes:
 *
 * - POST /v1/pipelines/{pipeline}/events     one envelope, or {"events":[…]} (≤ 500)
 * - POST /v1/pipelines/{pipeline}/documents  multipart: `file` (PDF, text, markdown) and optional `metadata`
 * - GET  /openapi.json, /metrics, /livez, /readyz
 *
 * Order of checks, cheapest first and before the body is read: the key (401),
 * the pipeline (404), the key's pipeline (403), the declared size (413) and the
 * gateway's in-flight byte budget (503); then the body: content type (415),
 * JSON and envelope (400), the key's rate (429), per-event checks, duplicates,
 * and Kafka (503 past the deadline).
 */
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { topicName } from '../lib/contracts.ts';
import { isRecordObject, ownField } from '../lib/json.ts';
import type { Logger } from '../lib/log.ts';
import type { PipelineInstance } from '../lib/pipeline.ts';
import { parseOccurredAt } from '../processors/validate/transform.ts';
import { INGEST_DEFAULTS } from './config.ts';
import { documentTypeOf, type DocumentStore, extractText, sha256Hex } from './documents.ts';
import { checkEvent } from './envelope.ts';
import { IngestError, type IngestErrorCode, isIngestError } from './errors.ts';
import type { EventLog, OutgoingEvent } from './event-log.ts';
import { type Accepted, type IdempotencyIndex, idempotencyKey } from './idempotency.ts';
import type { KeyRecord, KeyRing, RateLimiter } from './keys.ts';
import { keyingOf } from './keying.ts';
import type { IngestMetrics } from './metrics.ts';
import * as schemas from './schemas.ts';

export const DOCUMENT_UPLOADED = 'document_uploaded';

export interface IngestLimits {
  maxEventBytes: number;
  maxRequestBytes: number;
  maxDocumentBytes: number;
  maxEventsPerRequest: number;
  maxDocumentTextBytes: number;
  maxInflightBytes: number;
  documentConcurrency: number;
}

export interface IngestDeps {
  /** A pipeline by name, or throws (PIPELINE_UNKNOWN) for a name no plugin defines. */
  pipelineByName(name: string): PipelineInstance;
  keys: KeyRing;
  rateLimiter: RateLimiter;
  idempotency: IdempotencyIndex;
  events: EventLog;
  documents: DocumentStore;
  metrics: IngestMetrics;
  logger: Logger;
  limits?: Partial<IngestLimits>;
  now?: () => number;
  /** Ready: the keys and idempotency topics read to their end, and the producer ready. */
  ready(): { ready: boolean; detail: string };
  version?: string;
}

export interface EventResult {
  event_id: string | null;
  status: 'accepted' | 'duplicate' | 'rejected';
  partition?: number;
  offset?: string;
  error?: { code: IngestErrorCode; message: string };
}

declare module 'fastify' {
  interface FastifyRequest {
    ingest?: { pipeline: PipelineInstance; key: KeyRecord };
  }
}

const EVENTS_ROUTE = '/v1/pipelines/:pipeline/events';
const DOCUMENTS_ROUTE = '/v1/pipelines/:pipeline/documents';
/** Multipart framing and the metadata part on top of the document itself. */
const MULTIPART_OVERHEAD_BYTES = 256 * 1_024;

/** A counting semaphore: documents parsed at once. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];
  constructor(count: number) {
    this.free = count;
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

export async function buildIngestApp(deps: IngestDeps): Promise<FastifyInstance> {
  const limits: IngestLimits = {
    maxEventBytes: INGEST_DEFAULTS.maxEventBytes,
    maxRequestBytes: INGEST_DEFAULTS.maxRequestBytes,
    maxDocumentBytes: INGEST_DEFAULTS.maxDocumentBytes,
    maxEventsPerRequest: INGEST_DEFAULTS.maxEventsPerRequest,
    maxDocumentTextBytes: INGEST_DEFAULTS.maxDocumentTextBytes,
    maxInflightBytes: INGEST_DEFAULTS.maxInflightBytes,
    documentConcurrency: INGEST_DEFAULTS.documentConcurrency,
    ...deps.limits,
  };
  const now = deps.now ?? Date.now;
  const { metrics, idempotency } = deps;
  const documentSlots = new Slots(limits.documentConcurrency);
  let inflightBytes = 0;

  const app = Fastify({
    logger: false,
    bodyLimit: limits.maxRequestBytes,
    // Keep-alive connections closed on shutdown so a load balancer's idle sockets cannot hold the exit.
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'sluice ingest API',
        version: deps.version ?? '1',
        description:
          'Events and documents into sluice pipelines over HTTP. Every error body is {"error":{"code","message"}}; match on code. 429 and 503 carry Retry-After: retry with the same event ids, duplicates are answered, never produced twice.',
      },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'sluice ingest add-key --pipeline P' } } },
    },
  });
  await app.register(multipart, {
    limits: { fileSize: limits.maxDocumentBytes, files: 1, fields: 1, parts: 2, fieldSize: 64 * 1_024, headerPairs: 100 },
  });

  // The body is read as bytes and parsed here, so that invalid UTF-8 and invalid JSON answer our own codes.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  const send = (reply: FastifyReply, error: IngestError) => {
    if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
    return reply.code(error.status).send(error.body());
  };

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (isIngestError(error)) return send(reply, error);
    const code = error.code;
    if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || code === 'FST_INVALID_MULTIPART_CONTENT_TYPE') {
      return send(reply, new IngestError('UNSUPPORTED_MEDIA_TYPE', unsupportedMediaMessage(request)));
    }
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return send(reply, new IngestError('REQUEST_TOO_LARGE', `The request body is over ${limits.maxRequestBytes} bytes; send fewer events per request.`));
    }
    if (code === 'FST_REQ_FILE_TOO_LARGE') {
      return send(reply, new IngestError('DOCUMENT_TOO_LARGE', `The document is over ${limits.maxDocumentBytes} bytes (10 MiB); split it or send its text as events.`));
    }
    if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT' || code === 'FST_PROTO_VIOLATION' || code === 'FST_MP_PREMATURE_CLOSE') {
      return send(reply, new IngestError('INVALID_MULTIPART', 'Send one `file` part and at most one `metadata` part (a JSON object).'));
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return send(reply, new IngestError('INVALID_MULTIPART', `The request could not be read: ${error.message}`));
    }
    deps.logger.error({ err: error, route: request.routeOptions.url }, 'request failed unexpectedly');
    return send(reply, new IngestError('INTERNAL', 'The gateway failed to handle this request; retry with the same event ids, and report it if it persists.'));
  });

  app.setNotFoundHandler((request, reply) =>
    send(reply, new IngestError('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}; see /openapi.json.`)),
  );

  // Bounded memory: every request to the two write routes reserves its declared size before its body is read.
  const reserve = (request: FastifyRequest, reply: FastifyReply, limitBytes: number, tooLarge: () => IngestError) => {
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limitBytes) throw tooLarge();
    const bytes = Number.isFinite(declared) ? declared : limitBytes;
    if (inflightBytes + bytes > limits.maxInflightBytes) {
      throw new IngestError('OVERLOADED', 'The gateway is holding as much as it may right now; retry shortly (with the same event ids).', { retryAfterSeconds: 1 });
    }
    inflightBytes += bytes;
    metrics.inflightBytes.set(inflightBytes);
    let released = false;
    reply.raw.once('close', () => {
      if (released) return;
      released = true;
      inflightBytes -= bytes;
      metrics.inflightBytes.set(inflightBytes);
    });
  };

  const authenticate = async (request: FastifyRequest, documents: boolean) => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new IngestError('UNAUTHORIZED', 'Send an API key as `Authorization: Bearer <key>` (create one with: sluice ingest add-key --pipeline <pipeline>).');
    const key = deps.keys.authenticate(match[1]!);
    if (!key) throw new IngestError('UNAUTHORIZED', 'This API key is unknown or was revoked; ask the pipeline owners for a key (sluice ingest add-key).');
    const name = (request.params as { pipeline: string }).pipeline;
    let pipeline: PipelineInstance;
    try {
      pipeline = deps.pipelineByName(name);
    } catch {
      throw new IngestError('PIPELINE_UNKNOWN', `There is no pipeline ${JSON.stringify(name.slice(0, 100))}; check the name in the URL.`);
    }
    if (key.pipeline !== pipeline.name) {
      throw new IngestError('FORBIDDEN', `This key is for pipeline ${key.pipeline}, not ${pipeline.name}; use a key of ${pipeline.name}.`);
    }
    if (documents && !pipeline.plugin.eventTypes.includes(DOCUMENT_UPLOADED)) {
      throw new IngestError('DOCUMENTS_NOT_ACCEPTED', `Pipeline ${pipeline.name} does not take documents (its events: ${pipeline.plugin.eventTypes.join(', ')}); send events to /v1/pipelines/${pipeline.name}/events.`);
    }
    const partitions = await deps.events.partitions(topicName(pipeline.name, 'raw'));
    if (partitions === undefined) {
      throw new IngestError('PIPELINE_UNKNOWN', `Pipeline ${pipeline.name} has no topics yet; its operators create them with: sluice topics create --pipeline ${pipeline.name}`);
    }
    request.ingest = { pipeline, key };
  };

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const pipeline = request.ingest?.pipeline.name ?? '-';
    metrics.requests.inc({ route, status: String(reply.statusCode), pipeline });
    const bytes = Number(request.headers['content-length']);
    if (request.method === 'POST' && Number.isFinite(bytes)) metrics.requestBytes.inc({ route, pipeline }, bytes);
  });

  const rateLimited = (ratePerSecond: number, retryAfterSeconds: number) =>
    new IngestError('RATE_LIMITED', `This key may send ${ratePerSecond} events per second; slow down and retry after the Retry-After seconds.`, { retryAfterSeconds });

  /** Waits (bounded) for other requests holding any of these ids, then claims the free ones. */
  const claimIds = async (keys: string[]) => {
    for (let round = 0; ; round++) {
      const claim = idempotency.claim(keys.filter((k) => idempotency.get(k) === undefined));
      if (claim.busy.length === 0) return claim;
      claim.release();
      if (round >= 3) throw new IngestError('OVERLOADED', 'Another request with the same event ids is still in progress; retry shortly.', { retryAfterSeconds: 1 });
      await Promise.race([Promise.all(claim.busy), new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
    }
  };

  const produce = async (pipelineName: string, outgoing: OutgoingEvent[]): Promise<Accepted[]> => {
    const started = now();
    try {
      const accepted = await deps.events.append(outgoing);
      for (let i = 0; i < outgoing.length; i++) idempotency.record(outgoing[i]!.idempotencyKey, accepted[i]!);
      metrics.producedBytes.inc({ pipeline: pipelineName }, outgoing.reduce((sum, e) => sum + e.value.length, 0));
      return accepted;
    } finally {
      metrics.produceLatency.observe((now() - started) / 1_000);
      metrics.idempotencyEntries.set(idempotency.size);
      metrics.idempotencyEvictions.set(idempotency.evictedEarly);
    }
  };

  app.post(
    EVENTS_ROUTE,
    {
      schema: schemas.eventsRoute,
      bodyLimit: limits.maxRequestBytes,
      // The body is checked event by event in the handler (a batch answers per event); the schema documents it.
      validatorCompiler: () => () => true,
      onRequest: async (request, reply) => {
        await authenticate(request, false);
        // Over its rate already: refused before the body is read or parsed (the count is checked again after parsing).
        const { key } = request.ingest!;
        const waitSeconds = deps.rateLimiter.waitBeforeAny(key.key_id, key.rate_per_second);
        if (waitSeconds > 0) throw rateLimited(key.rate_per_second, waitSeconds);
        reserve(request, reply, limits.maxRequestBytes, () => new IngestError('REQUEST_TOO_LARGE', `The request body is over ${limits.maxRequestBytes} bytes (5 MiB); send fewer events per request.`));
      },
    },
    async (request, reply) => {
      const { pipeline, key } = request.ingest!;
      if (!Buffer.isBuffer(request.body)) throw new IngestError('UNSUPPORTED_MEDIA_TYPE', unsupportedMediaMessage(request));
      let body: unknown;
      try {
        body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(request.body));
      } catch (error) {
        throw new IngestError('INVALID_JSON', `The body is not ${error instanceof SyntaxError ? 'valid JSON' : 'UTF-8'}: send one JSON envelope or {"events":[…]}.`);
      }
      const batch = isRecordObject(body) && Object.hasOwn(body, 'events') && !Object.hasOwn(body, 'event_id');
      let events: unknown[];
      if (batch) {
        const list = ownField(body as object, 'events');
        if (!Array.isArray(list) || list.length === 0 || list.length > limits.maxEventsPerRequest) {
          throw new IngestError('INVALID_BATCH', `"events" must be an array of 1 to ${limits.maxEventsPerRequest} envelopes; split larger batches.`);
        }
        events = list;
      } else {
        events = [body];
      }

      const rate = deps.rateLimiter.take(key.key_id, key.rate_per_second, events.length);
      if (!rate.ok) throw rateLimited(key.rate_per_second, rate.retryAfterSeconds);

      const keying = keyingOf(pipeline.plugin);
      const checks = events.map((event) => checkEvent(event, pipeline, keying, Math.min(limits.maxEventBytes, pipeline.plugin.maxMessageBytes)));
      if (!batch && !checks[0]!.ok) {
        const rejected = checks[0]!;
        throw new IngestError(rejected.code, rejected.message);
      }

      const results: EventResult[] = new Array(checks.length);
      const firstIndex = new Map<string, number>();
      const candidates: number[] = [];
      checks.forEach((check, i) => {
        if (!check.ok) {
          results[i] = { event_id: check.eventId, status: 'rejected', error: { code: check.code, message: check.message } };
          return;
        }
        const id = idempotencyKey(pipeline.name, check.eventId);
        if (firstIndex.has(id)) return; // a repeat within this request: answered like its first occurrence below
        firstIndex.set(id, i);
        candidates.push(i);
      });

      const claim = await claimIds(candidates.map((i) => idempotencyKey(pipeline.name, (checks[i] as { eventId: string }).eventId)));
      try {
        const fresh: number[] = [];
        for (const i of candidates) {
          const check = checks[i]!;
          if (!check.ok) continue;
          const seen = idempotency.get(idempotencyKey(pipeline.name, check.eventId));
          if (seen) results[i] = { event_id: check.eventId, status: 'duplicate', partition: seen.partition, offset: seen.offset };
          else fresh.push(i);
        }
        const rawTopic = topicName(pipeline.name, 'raw');
        const outgoing = fresh.map((i) => {
          const check = checks[i] as Extract<(typeof checks)[number], { ok: true }>;
          return { topic: rawTopic, key: check.key, value: check.value, idempotencyKey: idempotencyKey(pipeline.name, check.eventId) };
        });
        const accepted = await produce(pipeline.name, outgoing);
        fresh.forEach((i, n) => {
          results[i] = { event_id: (checks[i] as { eventId: string }).eventId, status: 'accepted', partition: accepted[n]!.partition, offset: accepted[n]!.offset };
        });
      } finally {
        claim.release();
      }
      checks.forEach((check, i) => {
        if (results[i] !== undefined || !check.ok) return;
        const first = results[firstIndex.get(idempotencyKey(pipeline.name, check.eventId))!]!;
        results[i] = { event_id: check.eventId, status: 'duplicate', ...(first.partition !== undefined && { partition: first.partition, offset: first.offset }) };
      });
      for (const result of results) metrics.events.inc({ pipeline: pipeline.name, result: result.status });
      return reply.code(202).send({ results });
    },
  );

  app.post(
    DOCUMENTS_ROUTE,
    {
      schema: schemas.documentsRoute,
      bodyLimit: limits.maxDocumentBytes + MULTIPART_OVERHEAD_BYTES,
      validatorCompiler: () => () => true,
      onRequest: async (request, reply) => {
        await authenticate(request, true);
        reserve(request, reply, limits.maxDocumentBytes + MULTIPART_OVERHEAD_BYTES, () =>
          new IngestError('DOCUMENT_TOO_LARGE', `The upload is over ${limits.maxDocumentBytes} bytes (10 MiB); split the document or send its text as events.`),
        );
      },
    },
    async (request, reply) => {
      const { pipeline, key } = request.ingest!;
      const outcome = (code: string) => metrics.documents.inc({ pipeline: pipeline.name, outcome: code });
      try {
        const result = await handleDocument(request, pipeline, key);
        outcome(result.status);
        return reply.code(202).send(result);
      } catch (error) {
        outcome(isIngestError(error) ? error.code : 'INTERNAL');
        throw error;
      }
    },
  );

  async function handleDocument(request: FastifyRequest, pipeline: PipelineInstance, key: KeyRecord) {
    if (!request.isMultipart()) throw new IngestError('UNSUPPORTED_MEDIA_TYPE', unsupportedMediaMessage(request));
    let file: { bytes: Buffer; filename: string; mimetype: string } | undefined;
    let metadataText: string | undefined;
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file' || file) {
          await part.toBuffer().catch(() => {});
          throw new IngestError('INVALID_MULTIPART', 'Send the document in one part named `file`.');
        }
        file = { bytes: await part.toBuffer(), filename: part.filename, mimetype: part.mimetype };
      } else if (part.fieldname === 'metadata') {
        metadataText = String(part.value);
      } else {
        throw new IngestError('INVALID_MULTIPART', `Unknown part ${JSON.stringify(part.fieldname)}: send \`file\` and optionally \`metadata\`.`);
      }
    }
    if (!file) throw new IngestError('INVALID_MULTIPART', 'A `file` part is required (multipart/form-data).');
    const metadata = parseMetadata(metadataText);
    const filename = baseName(metadata.filename ?? file.filename);
    const kind = documentTypeOf(file.mimetype, filename, file.bytes);
    if (!kind) {
      throw new IngestError('UNSUPPORTED_DOCUMENT_TYPE', `Documents must be application/pdf, text/plain or text/markdown; got ${JSON.stringify(file.mimetype)}. Images need OCR, which the gateway does not do.`);
    }

    const rate = deps.rateLimiter.take(key.key_id, key.rate_per_second, 1);
    if (!rate.ok) throw new IngestError('RATE_LIMITED', `This key may send ${key.rate_per_second} events per second; retry after the Retry-After seconds.`, { retryAfterSeconds: rate.retryAfterSeconds });

    const sha256 = sha256Hex(file.bytes);
    const eventId = `doc-${sha256}`;
    const documentId = `sha256:${sha256}`;
    const idKey = idempotencyKey(pipeline.name, eventId);
    const duplicateOf = (seen: Accepted) => ({
      status: 'duplicate' as const,
      document_id: documentId,
      event_id: eventId,
      sha256,
      pages: seen.document?.pages ?? null,
      text_truncated: seen.document?.textTruncated ?? false,
      partition: seen.partition,
      offset: seen.offset,
    });
    const seen = idempotency.get(idKey);
    if (seen) return duplicateOf(seen);

    const claim = await claimIds([idKey]);
    try {
      const again = idempotency.get(idKey);
      if (again) return duplicateOf(again);
      const extracted = await documentSlots.run(() => extractText(file.bytes, kind, limits.maxDocumentTextBytes));
      await deps.documents.put(sha256, file.bytes);
      const envelope = {
        event_id: eventId,
        event_type: DOCUMENT_UPLOADED,
        occurred_at: metadata.occurredAt ?? new Date(now()).toISOString(),
        source: metadata.source ?? 'ingest-api',
        payload: {
          document_id: documentId,
          filename,
          content_type: kind.type,
          sha256,
          pages: extracted.pages,
          text: extracted.text,
          text_truncated: extracted.textTruncated,
        },
      };
      const value = Buffer.from(JSON.stringify(envelope), 'utf8');
      const messageKey = keyingOf(pipeline.plugin)(DOCUMENT_UPLOADED, envelope.payload, eventId);
      const [accepted] = await produce(pipeline.name, [
        { topic: topicName(pipeline.name, 'raw'), key: messageKey, value, idempotencyKey: idKey, document: { pages: extracted.pages, textTruncated: extracted.textTruncated } },
      ]);
      metrics.events.inc({ pipeline: pipeline.name, result: 'accepted' });
      return {
        status: 'accepted' as const,
        document_id: documentId,
        event_id: eventId,
        sha256,
        pages: extracted.pages,
        text_truncated: extracted.textTruncated,
        partition: accepted!.partition,
        offset: accepted!.offset,
      };
    } finally {
      claim.release();
    }
  }

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/livez', { schema: { hide: true } }, async (_request, reply) => reply.type('text/plain').send('ok\n'));
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const { ready, detail } = deps.ready();
    return reply.code(ready ? 200 : 503).type('text/plain').send(`${detail}\n`);
  });
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    metrics.keys.set(deps.keys.size);
    metrics.idempotencyEntries.set(idempotency.size);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  await app.ready();
  return app;
}

function unsupportedMediaMessage(request: FastifyRequest): string {
  const got = request.headers['content-type'] ?? 'none';
  return (request.routeOptions.url ?? '').endsWith('/documents')
    ? `Upload documents as multipart/form-data with a \`file\` part (got ${JSON.stringify(got)}).`
    : `Send events as application/json (got ${JSON.stringify(got)}).`;
}

/** A file name as a base name: no directories, no control characters, at most 255 characters. */
function baseName(raw: string): string {
  const last = raw.split(/[/\\]/).pop() ?? '';
  const clean = last.replace(/[\u0000-\u001f\u007f-\u009f]/g, '').trim();
  return ([...clean].slice(0, 255).join('') || 'document').toWellFormed();
}

function parseMetadata(text: string | undefined): { source?: string; occurredAt?: string | number; filename?: string } {
  if (text === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new IngestError('INVALID_METADATA', 'The `metadata` part must be a JSON object, e.g. {"source":"helpdesk","occurred_at":"2026-11-28T10:00:00Z"}.');
  }
  if (!isRecordObject(value) || Array.isArray(value)) throw new IngestError('INVALID_METADATA', 'The `metadata` part must be a JSON object.');
  const allowed = new Set(['source', 'occurred_at', 'filename']);
  const unknown = Object.keys(value).filter((name) => !allowed.has(name));
  if (unknown.length > 0) throw new IngestError('INVALID_METADATA', `Unknown metadata field(s) ${unknown.join(', ')}; allowed: source, occurred_at, filename.`);
  const out: { source?: string; occurredAt?: string | number; filename?: string } = {};
  const source = ownField(value, 'source');
  if (source !== undefined) {
    if (typeof source !== 'string' || !source.isWellFormed()) throw new IngestError('INVALID_METADATA', 'metadata.source must be a string.');
    out.source = source;
  }
  const occurredAt = ownField(value, 'occurred_at');
  if (occurredAt !== undefined) {
    const parsed = parseOccurredAt(occurredAt);
    if (typeof parsed === 'string') throw new IngestError('INVALID_METADATA', `metadata.occurred_at: ${parsed}`);
    out.occurredAt = occurredAt as string | number;
  }
  const filename = ownField(value, 'filename');
  if (filename !== undefined) {
    if (typeof filename !== 'string' || filename.trim() === '') throw new IngestError('INVALID_METADATA', 'metadata.filename must be a non-empty string.');
    out.filename = filename;
  }
  return out;
}
