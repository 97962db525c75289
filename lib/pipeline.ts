/**
 * What a pipeline is: the plugin contract that `pipelines/<kind>/index.ts`
 * implements and that the generic stages, the sink, the CLI, the demo and the
 * tests read. Nothing generic imports a pipeline by name; everything specific
 * to one (event types, payload rules, features, model I/O, policy, contracts,
 * generator) arrives through this interface, from `pipelines/registry.ts`.
 *
 * Lifecycle: a plugin is a plain value, loaded once per process. Its functions
 * are pure unless said otherwise (no I/O, no clock: time comes in arguments),
 * so the broker-free driver and unit tests run them as they are.
 */
import type { z } from 'zod';
import type { DeadLetterReason, DecidedBy } from './contracts.ts';

/**
 * Who answers for a pipeline (the brief's four owners, and more): carried into
 * metric labels (`sluice_pipeline_info`), alerts, `sluice status` and runbooks.
 * Values are team or rota names, as the paging tool knows them.
 */
export interface Owners {
  /** The team that runs the pipeline; a label of every metric. */
  team: string;
  /** Who answers for the data: producers' contracts, dead letters, re-drives. */
  data: string;
  /** Who answers for the model: training, promotion, rollback, drift. */
  model: string;
  /** Who answers for the infrastructure: Kafka, the registry, ClickHouse, the processes. */
  infra: string;
  /** Who is paged first. */
  oncall: string;
  /** Who is called when on-call does not answer. */
  escalation: string;
  /** The pipeline's own runbook: a path under docs/runbooks/ or a URL. */
  runbook: string;
  /** Where the situation runbooks are (`<runbookBase><situation>.md`): docs/runbooks/ or a URL ending in `/`. */
  runbookBase: string;
}

/**
 * The outcome of a pipeline's payload rules. `field` is the payload field at
 * fault (without the `payload.` prefix), so the dead letter's message starts
 * with `payload.<field>: `; `droppedFields` counts the unknown fields removed.
 */
export type PayloadResult<P> = { ok: true; value: P; droppedFields: string[] } | { ok: false; field: string; message: string };

/**
 * A pipeline's payload rules: parse and normalize an untrusted payload (parsed
 * JSON or a decoded Avro record) of one of the pipeline's event types. Read
 * fields with `ownField` (lib/json.ts) and build the output by explicit field
 * picking; never throw for bad data.
 */
export type PayloadRules<P> = (eventType: string, payload: object) => PayloadResult<P>;

/**
 * How the model's output columns are read. `binary`: the score is the
 * probability of `classes[positiveIndex]`, and there is no label. `multiclass`:
 * the score is the top class probability and the label is that class.
 */
export type ModelOutput =
  | { kind: 'binary'; classes: readonly string[]; positiveIndex: number }
  | { kind: 'multiclass'; classes: readonly string[] };

/**
 * The model as a pipeline feeds it: the one definition of its features, used
 * online by the score stage and offline (through the pipeline's export script)
 * to write training data, so training and serving cannot drift apart.
 */
export interface ModelAdapter<P> {
  /** The model's input columns in order; a model whose card lists others is refused at load. */
  readonly featureNames: readonly string[];
  /** The model input row of a validated payload: featureNames.length finite numbers. Pure. */
  features(eventType: string, payload: P): Float32Array | number[];
  readonly output: ModelOutput;
  /**
   * Named numbers kept with every scored record and in ClickHouse for drift and
   * data-quality checks; few and meaningful (all features of a small tabular
   * model, a handful of text statistics for a text model). Each name needs a
   * reference distribution in the model card (`reference.features`).
   */
  readonly monitoredNames: readonly string[];
  monitored(eventType: string, payload: P, features: ArrayLike<number>): number[];
}

export type { DecidedBy };

/** What the decide stage hands the policy: the validated event and the model's view of it. */
export interface PolicyInput<P> {
  eventType: string;
  payload: P;
  /** binary: P(positive); multiclass: top class probability; null when no model was consulted. */
  score: number | null;
  /** multiclass: the top class; null otherwise or when no model was consulted. */
  label: string | null;
  /** Every class's probability by name, empty when no model was consulted. */
  classScores: Readonly<Record<string, number>>;
}

export interface Verdict {
  decision: string;
  decidedBy: DecidedBy;
  /** Stable, machine-readable reason codes (snake_case): dashboards and reviewers filter on them. */
  reasons: string[];
  /** The pipeline's own decided-record fields (after the common ones), e.g. `{ queue, priority }`. */
  fields?: Record<string, unknown>;
}

/** A policy in force: loaded once at start, then pure. */
export interface Policy<P> {
  /** Stamped on every decision; changes whenever rules, thresholds or lists change. */
  readonly version: string;
  decide(input: PolicyInput<P>, settings: { killSwitchOn: boolean }): Verdict;
}

export interface PolicyModule<P, Config = unknown> {
  /**
   * The policy's environment variables (zod object over process.env), parsed
   * with the process's other settings before any I/O, so every bad variable is
   * reported in one CONFIG_INVALID.
   */
  readonly configSchema: z.ZodType<Config>;
  /** Builds the policy from its parsed config (reads its lists at start); throws CONFIG_INVALID. */
  load(config: Config): Policy<P>;
}

/** One generated event as a producer would send it to `<p>.raw`. */
export interface GeneratedEvent {
  index: number;
  eventId: string;
  eventType: string;
  key: string;
  /** The bytes a producer writes (JSON envelope, UTF-8). */
  value: Buffer;
  occurredAtMs: number;
}

export interface GenerateOptions {
  seed: number;
  count: number;
  /** occurred_at of event 0, epoch ms. */
  startMs: number;
  /** occurred_at step between consecutive events, ms; default 1000. */
  spacingMs?: number;
  /** event ids are `<idPrefix>-<seed>-<index>`; default `evt`. Tests pass a unique prefix per run. */
  idPrefix?: string;
  /** Index of the first event; default 0. Lets a producer resume or split a run. */
  firstIndex?: number;
}

export interface MalformedOptions {
  /** The validate stage's size limit; the `oversized` sample is one byte over it. */
  maxMessageBytes: number;
  /** Prefix of keys and event ids; default `evt`. */
  idPrefix?: string;
  seed?: number;
  /** occurred_at of the samples that carry one, epoch ms; default 2026-11-01. */
  occurredAtMs?: number;
}

/** One message per class of bad input, each with the dead-letter reason validation must give it. */
export interface MalformedSample {
  /** Names the class of bad input, e.g. `invalid-utf8`, `plan-out-of-domain`. */
  name: string;
  reason: DeadLetterReason;
  /** The field at fault as a dotted path (`payload.summary`), which `dlq.message` should name; null when the whole value is at fault. */
  field: string | null;
  /** The event id a validator can read from the value, or null when it cannot parse one. */
  eventId: string | null;
  /** Unique per sample and prefix: find a sample's dead letter by its key. */
  key: string;
  /** null: a tombstone. */
  value: Buffer | null;
}

/** Deterministic traffic for the demo, tests, benchmarks and training: a function of (seed, index). */
export interface TrafficGenerator {
  events(options: GenerateOptions): Iterable<GeneratedEvent>;
  malformed(options: MalformedOptions): MalformedSample[];
}

/**
 * How `sluice monitor` judges a pipeline, beyond its defaults (monitor/checks.ts):
 * every field is optional, and a pipeline without this block is monitored with
 * the defaults.
 */
export interface MonitoringSettings {
  /**
   * PSI at or above which a monitored feature (by its monitored name) or the
   * model score (`score`) has drifted; default 0.2 for every subject.
   */
  readonly psiThresholds?: Readonly<Record<string, number>>;
  /** No drift or quality verdict on a window with fewer scored events; default 200. */
  readonly minSamples?: number;
  /**
   * Payload fields watched for nulls (`data_quality`, subject: the field): the
   * field's 0/1 missing indicator among monitoredNames, whose mean is the
   * field's null rate (its reference mean, the expected rate).
   */
  readonly missingIndicators?: Readonly<Record<string, string>>;
  /** `output_collapse` on `decision`: one decision's share of a window at or above this; default 0.99. */
  readonly decisionShareMax?: number;
}

/**
 * How a pipeline's human review runs (sluice review, and the decide stage's
 * audit sampling); every field is optional, with the defaults below.
 */
export interface ReviewSettings {
  /** An item not resolved this long after its decision expires to `fallbackDecision`; default 4 h. SLUICE_REVIEW_SLA_SECONDS overrides it for every pipeline. */
  readonly slaSeconds?: number;
  /** The share (0..1) of automatic decisions (model or rule) also sent to review as `audit` items; default 0.01. */
  readonly auditRate?: number;
  /** What an expired review item is decided (decided_by fallback); one of `decisions`; default `reviewDecision`. */
  readonly fallbackDecision?: string;
  /** How long a reviewer's claim holds an item; default 10 minutes. SLUICE_REVIEW_LEASE_SECONDS overrides it for every pipeline. */
  readonly leaseSeconds?: number;
}

/**
 * How events enter a pipeline (the ingest gateway, producers to `<p>.raw`, and
 * the validate stage's duplicate check and event-time bounds); every field is
 * optional, with the defaults in processors/validate/config.ts (docs/ingest.md).
 */
export interface IngestSettings {
  /**
   * The envelope fields whose value is the Kafka message key, as dotted paths
   * tried in order (`payload.user_id`: one user's events in order); the first
   * that holds a non-empty string wins, and the `event_id` when none does (or
   * without this). Retries of an event carry the same key, so they reach the
   * same partition, where validate's duplicate check sees them.
   */
  readonly keying?: readonly string[];
  /** An occurred_at older than this before validation is flagged `late` (still decided); unset: never. */
  readonly latenessMs?: number;
  /** An occurred_at further than this ahead of the validator's clock is flagged `early` (still decided); unset: never. */
  readonly clockSkewMs?: number;
  /** validate drops an event_id it validated this recently on the same partition; default 24 h. Also the changelog's retention. */
  readonly dedupWindowMs?: number;
}

// biome-ignore lint/suspicious/noExplicitAny: the registry holds plugins of different payload and config types; each is checked where it is defined.
export interface PipelinePlugin<P = any, Config = any> {
  /** Names the definition: `models/<kind>/`, `schemas/<kind>/`, and instances `<kind>-<suffix>`. */
  readonly kind: string;
  readonly description: string;
  /** The event types accepted on `<p>.raw`; any other is UNEXPECTED_EVENT_TYPE. */
  readonly eventTypes: readonly string[];
  readonly owners: Owners;
  /** The decisions this pipeline makes; `reviewDecision` is one of them. */
  readonly decisions: readonly string[];
  /** A decision of this value is also written to `<p>.review`; it is also the fallback decision. */
  readonly reviewDecision: string;
  /** Values over this many bytes are OVERSIZED (before parsing); below the broker's message limit. */
  readonly maxMessageBytes: number;
  /** Absolute path of `schemas/<kind>/` with validated.avsc, scored.avsc, decided.avsc, review.avsc. */
  readonly schemasDir: string;
  readonly payload: PayloadRules<P>;
  readonly model: ModelAdapter<P>;
  readonly policy: PolicyModule<P, Config>;
  readonly generator: TrafficGenerator;
  /** Monitor thresholds and null indicators (sluice monitor); optional, defaults apply without it. */
  readonly monitoring?: MonitoringSettings;
  /** Keying, event-time bounds and the duplicate window (ingest gateway, validate); optional, defaults apply without it. */
  readonly ingest?: IngestSettings;
  /** Review SLA, audit sampling, fallback decision and lease (sluice review); optional, defaults apply without it. */
  readonly review?: ReviewSettings;
  /**
   * The stages' circuit breaker (processors/runtime/circuit.ts): open a
   * partition when more than `threshold` of its last `window` records were
   * dead-lettered; optional, defaults apply without it, and SLUICE_CIRCUIT_*
   * variables override it per process.
   */
  readonly circuitBreaker?: Readonly<{ threshold?: number; window?: number; minRecords?: number; coolDownSeconds?: number }>;
}

/** A pipeline as a process runs it: an instance name (`signup-risk`, `signup-risk-staging`) and the plugin that defines it. */
// biome-ignore lint/suspicious/noExplicitAny: as for PipelinePlugin.
export interface PipelineInstance<P = any, Config = any> {
  /** Names the topics (`<name>.raw`…), groups, subjects and control keys. */
  name: string;
  plugin: PipelinePlugin<P, Config>;
  owners: Owners;
}
