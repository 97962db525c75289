/**
 * Replay, the pure part: what a replay is (its identity, its window, its
 * record on the control topic), how it numbers its decisions, and what it
 * reports. No Kafka, no clock: engine.ts wires it to the broker.
 *
 * A replay re-runs a time window of a pipeline's input through the current
 * champion and policy, like `kafka-consumer-groups --reset-offsets
 * --to-datetime`: the window is resolved to offsets once, when the replay
 * starts, and recorded on the control topic with its run number, so the same
 * command run again after a crash resumes the same window, and a finished
 * replay is not run twice unless forced.
 */
import { createHash } from 'node:crypto';
import { controlKey } from '../../lib/contracts.ts';
import { SluiceError } from '../../lib/errors.ts';

/** Where a replay starts: `score` re-scores `<p>.validated`; `validate` also re-validates `<p>.raw`. */
export const REPLAY_STAGES = ['score', 'validate'] as const;
export type ReplayStage = (typeof REPLAY_STAGES)[number];
export const inputOf = (stage: ReplayStage): 'raw' | 'validated' => (stage === 'validate' ? 'raw' : 'validated');

/** What the operator asked for: the command's arguments. */
export interface ReplayRequest {
  pipeline: string;
  fromStage: ReplayStage;
  fromMs: number;
  /** null: up to the moment the replay first starts (resolved once, then kept). */
  toMs: number | null;
}

/** One partition of the window: input offsets [start, end). */
export interface ReplayRange {
  partition: number;
  start: string;
  end: string;
}

/** A replay as recorded on the control topic (the setting's value, as JSON). */
export interface ReplayState {
  /** Stable for a request: the same command names the same replay. */
  id: string;
  /** 1 for the first run; `--force` on a finished replay starts the next. */
  run: number;
  status: 'running' | 'finished';
  from_stage: ReplayStage;
  from_ms: number;
  to_ms: number;
  /** Whether the command gave --to-datetime (else to_ms is when the run started). */
  to_given: boolean;
  topic: string;
  ranges: ReplayRange[];
  started_at: number;
  finished_at: number | null;
  /** The run's summary, once finished (what the last invocation did). */
  summary: ReplaySummary | null;
}

/** The replay's identity: a function of the request alone, so a rerun of the same command finds it. */
export function replayId(request: ReplayRequest): string {
  const text = `${request.pipeline}|${request.fromStage}|${request.fromMs}|${request.toMs ?? 'open'}`;
  return `r${createHash('sha256').update(text).digest('hex').slice(0, 10)}`;
}

/** The control setting that holds a replay's state. */
export const replaySetting = (id: string) => `replay.${id}`;
export const replayControlKey = (pipeline: string, id: string) => controlKey(pipeline, replaySetting(id));
/** The name a run's decisions carry in `replay_id`. */
export const runName = (state: Pick<ReplayState, 'id' | 'run'>) => `${state.id}-${state.run}`;
/** The run's consumer group (its progress) and transactional id (its fence). */
export const replayGroupId = (pipeline: string, state: Pick<ReplayState, 'id' | 'run'>) => `sluice.${pipeline}.replay.${runName(state)}`;

export function parseReplayState(value: string): ReplayState | null {
  try {
    const state = JSON.parse(value) as ReplayState;
    return typeof state.id === 'string' && Number.isInteger(state.run) && Array.isArray(state.ranges) ? state : null;
  } catch {
    return null;
  }
}

/**
 * A --from-datetime / --to-datetime value: an ISO 8601 date-time, as
 * kafka-consumer-groups takes it (`2026-12-01T03:00:00Z`, `…+01:00`, or
 * without a zone: UTC), or epoch milliseconds.
 */
export function parseDatetime(text: string, option: string): number {
  const trimmed = text.trim();
  if (/^\d{10,}$/.test(trimmed)) return Number(trimmed);
  const zoned = /(?:Z|[+-]\d{2}:?\d{2})$/i.test(trimmed) ? trimmed : `${trimmed}Z`;
  const ms = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(trimmed) ? Date.parse(zoned) : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new SluiceError('CONFIG_INVALID', `${option} "${text}" is not a date-time: use ISO 8601 such as 2026-12-01T03:00:00Z (UTC when no zone is given), or epoch milliseconds.`);
  }
  return ms;
}

/** What is known of an event's decisions on `<p>.decided`. */
export interface KnownDecisions {
  /** The highest decision_version seen. */
  version: number;
  /** The decision that stands (of the highest version). */
  decision: string;
  /** A reviewer decided it at some version: a replay never overrides that. */
  human: boolean;
}

/**
 * The decisions of the events a replay may touch, built from `<p>.decided`
 * (and from the replay's own writes as it goes): the version each
 * re-decision must exceed, what stood before it, and which events a human
 * has decided.
 */
export class DecisionIndex {
  private readonly events = new Map<string, KnownDecisions>();

  observe(decision: { event_id: string; decision_version: number; decision: string; decided_by: string }): void {
    const known = this.events.get(decision.event_id);
    const human = decision.decided_by === 'human';
    if (known === undefined) {
      this.events.set(decision.event_id, { version: decision.decision_version, decision: decision.decision, human });
      return;
    }
    // In place: a replay observes every re-decision it writes, on an index of the window's events.
    if (decision.decision_version >= known.version) {
      known.version = decision.decision_version;
      known.decision = decision.decision;
    }
    if (human) known.human = true;
  }

  get(eventId: string): KnownDecisions | undefined {
    return this.events.get(eventId);
  }

  /** The version a replay gives its re-decision of an event whose decisions are `known` (what `get` returned): above every earlier one, and never the first decision's (1). */
  static nextVersion(known: KnownDecisions | undefined): number {
    return Math.max(known?.version ?? 0, 1) + 1;
  }

  get size(): number {
    return this.events.size;
  }
}

/**
 * What a re-decision writes to `<p>.review`, if anything, so the review queue
 * follows it: an open item must correct the decision that stands now, or its
 * human decision would carry a version a replay already used.
 * - the re-decision is the review decision: a review item (refreshing an open
 *   one to the new version; a closed one stays closed);
 * - the event may have an open item (its standing decision was the review
 *   decision, or it was sampled for audit) and the re-decision is not a
 *   review: `superseded`, which closes that item (the replay's decision stands).
 */
export function reviewRecordKind(args: { known: KnownDecisions | undefined; decision: string; reviewDecision: string; audited: boolean }): 'review' | 'superseded' | null {
  if (args.decision === args.reviewDecision) return 'review';
  if (args.known === undefined || args.known.human) return null;
  return args.known.decision === args.reviewDecision || args.audited ? 'superseded' : null;
}

/** How many of the window's events a human decided: a run skips them (the plan's `humanDecided`). */
export function humanDecidedIn(index: Pick<DecisionIndex, 'get'>, eventIds: Iterable<string>): number {
  let count = 0;
  for (const id of eventIds) if (index.get(id)?.human) count++;
  return count;
}

/** What a run did, for stdout and the control record. */
export interface ReplaySummary {
  replay: string;
  /** Input records read in the window (this invocation). */
  read: number;
  /** Re-decisions written to `<p>.decided`. */
  replayed: number;
  /** Re-decisions whose decision differs from the one that stood, by `from→to`. */
  changed: Record<string, number>;
  unchanged: number;
  /** Events with no earlier decision on the topic (dead-lettered later, or still in flight): decided now. */
  new: number;
  /** Events a human decided: never overridden. */
  skipped_human: number;
  /** Records that failed validation or scoring again (their dead letters are already on `<p>.dlq`). */
  failed: number;
  /** True when this invocation resumed an interrupted run. */
  resumed: boolean;
}

export const emptySummary = (replay: string, resumed: boolean): ReplaySummary => ({
  replay,
  read: 0,
  replayed: 0,
  changed: {},
  unchanged: 0,
  new: 0,
  skipped_human: 0,
  failed: 0,
  resumed,
});

export function formatSummary(summary: ReplaySummary): string {
  const changed = Object.entries(summary.changed).sort(([a], [b]) => a.localeCompare(b));
  const changedCount = changed.reduce((n, [, count]) => n + count, 0);
  const lines = [
    `replay ${summary.replay}${summary.resumed ? ' (resumed)' : ''}`,
    `  events read      ${summary.read}`,
    `  events replayed  ${summary.replayed}`,
    `  decisions changed ${changedCount}${changed.length > 0 ? `: ${changed.map(([pair, count]) => `${pair} ${count}`).join(', ')}` : ''}`,
    `  unchanged        ${summary.unchanged}`,
    `  first decisions  ${summary.new}`,
    `  skipped (human)  ${summary.skipped_human}`,
    `  failed again     ${summary.failed}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** A replay's plan: the window per partition, and what it would decide with. */
export interface ReplayPlan {
  replay: string;
  /** What running the command with --execute would do. */
  action: 'start' | 'resume' | 'nothing-to-do' | 'start-again';
  topic: string;
  fromMs: number;
  toMs: number;
  ranges: Array<ReplayRange & { events: number; done?: string }>;
  modelVersion: string;
  challengerVersion: string | null;
  killSwitchOn: boolean;
  policyVersion: string;
  /** Events of the window whose decision a reviewer made (decided_by human at some version): a run keeps them and skips them. */
  humanDecided: number;
}

export function formatPlan(plan: ReplayPlan): string {
  const action = {
    start: 'nothing changed; run again with --execute to replay',
    resume: 'an interrupted run: --execute resumes it where it stopped',
    'nothing-to-do': 'already replayed: nothing to do (--force --execute replays it again)',
    'start-again': 'already replayed: --execute replays it again (--force)',
  }[plan.action];
  const lines = [
    `replay ${plan.replay}: ${plan.topic} from ${new Date(plan.fromMs).toISOString()} to ${new Date(plan.toMs).toISOString()}`,
    `  model ${plan.modelVersion}${plan.challengerVersion ? ` (challenger ${plan.challengerVersion} in shadow)` : ''}${plan.killSwitchOn ? ' — kill switch ON: decisions fall back' : ''}, policy ${plan.policyVersion}`,
    '  PARTITION  START  END  EVENTS',
    ...plan.ranges.map((r) => `  ${String(r.partition).padEnd(9)}  ${r.start}  ${r.end}  ${r.events}${r.done ? `  (${r.done})` : ''}`),
    `  total events ${plan.ranges.reduce((n, r) => n + r.events, 0)}`,
    `  human decisions ${plan.humanDecided} (kept: a replay never overrides a reviewer; these events are skipped)`,
    `  ${action}`,
  ];
  return `${lines.join('\n')}\n`;
}
