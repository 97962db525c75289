/**
 * The control plane every processor follows: the compacted `sluice.control`
 * topic. Read whole before the first batch is processed, then followed, so a
 * kill switch applies within about a fetch interval, with no restart.
 */
import { followTopic, type Follower } from '../../connectors/kafka/follow.ts';
import { openProducer } from '../../connectors/kafka/admin.ts';
import type { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { framedEncoder } from '../../connectors/registry/registry.ts';
import type { SchemaCodec } from '../../lib/codec.ts';
import { SluiceError, errorMessage } from '../../lib/errors.ts';
import { retry } from '../../lib/retry.ts';
import type { Logger } from '../../lib/log.ts';
import { CONTROL_TOPIC, controlKey } from '../../lib/contracts.ts';

export const CONTROL_SUBJECT = `${CONTROL_TOPIC}-value`;
export const KILL_SWITCH_MODEL = 'kill_switch.model';

/**
 * The tiered kill switch, one control setting per pipeline instance:
 * `model` is normal; `rules` decides without the model (rules, then the
 * fallback); `review` sends every event to human review; `park` holds events
 * in Kafka, undecided, until the mode changes (decide stops consuming).
 */
export const KILL_SWITCH_MODES = ['model', 'rules', 'review', 'park'] as const;
export type KillSwitchMode = (typeof KILL_SWITCH_MODES)[number];
/** The values of the switch before it had tiers, still accepted: `on` turned the model off. */
export const KILL_SWITCH_ALIASES: Readonly<Record<string, KillSwitchMode>> = { on: 'rules', off: 'model' };

/**
 * The mode a kill-switch value names. `sluice kill-switch` writes only known
 * modes; a value it does not know (written by a later version) reads as
 * `rules`: a switch someone pulled must never leave the model deciding.
 */
export function killSwitchModeOf(value: string | undefined): KillSwitchMode {
  if (value === undefined || value === '') return 'model';
  const mode = KILL_SWITCH_ALIASES[value] ?? value;
  return (KILL_SWITCH_MODES as readonly string[]).includes(mode) ? (mode as KillSwitchMode) : 'rules';
}

/**
 * A stage's circuit breaker, per input partition: setting
 * `circuit.<process>.<partition>`, value `open` or `closed`. Written by the
 * stage that trips it (and by its probe), and by `sluice circuit reset`.
 */
export const circuitSetting = (process: string, partition: number): string => `circuit.${process}.${partition}`;
const CIRCUIT_SETTING = /^circuit\.([a-z]+)\.(\d+)$/;
/** The process and partition a circuit setting names, or null for any other setting. */
export function parseCircuitSetting(setting: string): { process: string; partition: number } | null {
  const match = CIRCUIT_SETTING.exec(setting);
  return match === null ? null : { process: match[1]!, partition: Number(match[2]) };
}

/**
 * Model aliases: `champion` is served (it decides), `challenger` is scored in
 * shadow beside it (never decides). Each is one control setting per pipeline
 * instance whose value is a model version ("" for none), with who, when and
 * why, and the versions it named before (newest first), so a rollback needs
 * nothing but the topic.
 */
export const MODEL_ALIASES = ['champion', 'challenger'] as const;
export type ModelAlias = (typeof MODEL_ALIASES)[number];
export const aliasSetting = (alias: ModelAlias): string => `model.${alias}`;
/** How many earlier versions an alias record keeps for rollback. */
export const ALIAS_HISTORY_LIMIT = 20;

export interface ControlSetting {
  pipeline: string;
  setting: string;
  value: string;
  reason: string | null;
  updated_by: string;
  updated_at: number;
  /** Earlier values, newest first (model aliases); absent in records written before the field existed. */
  history?: string[];
}

/** The alias record that points `alias` at `version`, pushing the current value (if any) onto its history. */
export function promotedAlias(args: { pipeline: string; alias: ModelAlias; version: string; current: ControlSetting | undefined; reason: string | null; by: string; now: number }): ControlSetting {
  const previous = args.current?.value ? [args.current.value, ...(args.current.history ?? [])] : [...(args.current?.history ?? [])];
  return {
    pipeline: args.pipeline,
    setting: aliasSetting(args.alias),
    value: args.version,
    reason: args.reason,
    updated_by: args.by,
    updated_at: args.now,
    history: previous.slice(0, ALIAS_HISTORY_LIMIT),
  };
}

/** The alias record that puts `alias` back on the version it named before, or null when it named none. */
export function rolledBackAlias(args: { current: ControlSetting | undefined; reason: string | null; by: string; now: number }): ControlSetting | null {
  const [previous, ...older] = args.current?.history ?? [];
  if (args.current === undefined || previous === undefined) return null;
  return { ...args.current, value: previous, history: older, reason: args.reason, updated_by: args.by, updated_at: args.now };
}

export class ControlState {
  private readonly settings = new Map<string, ControlSetting>();
  private readonly listeners: Array<(setting: ControlSetting) => void> = [];

  /** Sets (or with null, removes) a setting; listeners hear of it unless `quiet`. */
  apply(key: string, setting: ControlSetting | null, options: { quiet?: boolean } = {}): void {
    if (setting === null) this.settings.delete(key);
    else this.settings.set(key, setting);
    if (setting && !options.quiet) for (const listener of this.listeners) listener(setting);
  }

  size(): number {
    return this.settings.size;
  }

  get(pipeline: string, setting: string): ControlSetting | undefined {
    return this.settings.get(controlKey(pipeline, setting));
  }

  killSwitchMode(pipeline: string): KillSwitchMode {
    return killSwitchModeOf(this.get(pipeline, KILL_SWITCH_MODEL)?.value);
  }

  /** True when the model is switched off (mode `rules`): score skips it and the policy decides by rules. */
  killSwitchOn(pipeline: string): boolean {
    return this.killSwitchMode(pipeline) === 'rules';
  }

  /** The open circuits of a pipeline instance, optionally of one process (stage, or `all`). */
  openCircuits(pipeline: string, process?: string): Array<{ process: string; partition: number; setting: ControlSetting }> {
    const open: Array<{ process: string; partition: number; setting: ControlSetting }> = [];
    for (const setting of this.settings.values()) {
      if (setting.pipeline !== pipeline || setting.value !== 'open') continue;
      const circuit = parseCircuitSetting(setting.setting);
      if (circuit === null || (process !== undefined && circuit.process !== process)) continue;
      open.push({ ...circuit, setting });
    }
    return open.sort((a, b) => a.process.localeCompare(b.process) || a.partition - b.partition);
  }

  /** The version an alias names for a pipeline instance, or null when it names none. */
  modelAlias(pipeline: string, alias: ModelAlias): string | null {
    return this.get(pipeline, aliasSetting(alias))?.value || null;
  }

  onChange(listener: (setting: ControlSetting) => void): void {
    this.listeners.push(listener);
  }
}

/**
 * Follows the control topic into a ControlState; resolves once caught up.
 *
 * What is on the topic at start is history: only the latest value per key is
 * applied, once, when the follower has caught up, so a restart never replays
 * old settings (a kill switch flipping on and off for a moment). Records that
 * arrive later are applied in order. A registry outage while decoding is
 * retried with bounded backoff, interruptible by stop, logged at most every
 * few seconds.
 */
export async function followControl(options: {
  brokers: string[];
  catalog: SchemaCodec;
  clientId: string;
  logger: Logger;
}): Promise<{ state: ControlState; follower: Follower }> {
  const state = new ControlState();
  const stopped = new AbortController();
  let caughtUp = false;
  /** Before catching up: the latest record per key. After: records in arrival order. */
  const history = new Map<string, Buffer | null>();
  const pending: Array<{ key: string; value: Buffer | null }> = [];

  const decode = async (value: Buffer): Promise<ControlSetting | undefined> => {
    try {
      // A registry outage: wait it out (the setting must not be skipped), until stopped.
      await retry(() => options.catalog.prefetch([value]), { what: 'control topic decode', logger: options.logger, signal: stopped.signal, retriable: () => true });
    } catch {
      return undefined; // only when stopped
    }
    const decoded = options.catalog.decodeSync(value);
    if (decoded.kind === 'decoded') return decoded.value as ControlSetting;
    options.logger.error({ decoded }, 'unreadable control record ignored');
    return undefined;
  };

  let draining: Promise<void> | undefined;
  const drain = (): Promise<void> =>
    (draining ??= (async () => {
      while (pending.length > 0 && !stopped.signal.aborted) {
        const { key, value } = pending[0]!;
        const setting = value === null ? null : await decode(value);
        if (setting !== undefined) {
          state.apply(key, setting);
          if (setting !== null) options.logger.info({ key, value: setting.value, by: setting.updated_by }, 'control setting applied');
        }
        pending.shift();
      }
    })().finally(() => {
      draining = undefined;
    }));

  const follower = await followTopic({
    brokers: options.brokers,
    topic: CONTROL_TOPIC,
    clientId: options.clientId,
    logger: options.logger,
    onMessage: ({ key, value }) => {
      if (key === null) return;
      if (!caughtUp) {
        history.delete(key); // keeps insertion order by latest write
        history.set(key, value);
        return;
      }
      pending.push({ key, value });
      void drain();
    },
  });
  await follower.caughtUp;
  // The latest value of each key, applied quietly: this is the state, not news.
  for (const [key, value] of history) {
    const setting = value === null ? null : await decode(value);
    if (setting !== undefined) state.apply(key, setting, { quiet: true });
  }
  caughtUp = true;
  options.logger.info({ settings: state.size() }, 'control state loaded');
  await drain();
  return {
    state,
    follower: {
      caughtUp: follower.caughtUp,
      async stop() {
        stopped.abort();
        await follower.stop();
      },
    },
  };
}

/**
 * The control state as it is now: reads the topic to its end and stops. For
 * commands that read before they write (promote, rollback, list).
 */
export async function readControl(options: { brokers: string[]; catalog: SchemaCodec; clientId: string; logger: Logger }): Promise<ControlState> {
  const { state, follower } = await followControl(options);
  await follower.stop();
  return state;
}

/** Writes one control setting and waits for the broker's acknowledgement. */
export async function writeControl(options: {
  brokers: string[];
  catalog: SchemaCatalog;
  setting: Omit<ControlSetting, 'updated_at'> & { updated_at?: number };
}): Promise<void> {
  const { id, type } = await options.catalog.latest(CONTROL_SUBJECT);
  const record: ControlSetting = { ...options.setting, history: options.setting.history ?? [], updated_at: options.setting.updated_at ?? Date.now() };
  const producer = await openProducer(options.brokers, 'sluice-control');
  try {
    await producer.send(CONTROL_TOPIC, [{ key: controlKey(record.pipeline, record.setting), value: framedEncoder(id, type)(record) }]);
  } catch (error) {
    throw new SluiceError('CONTROL_WRITE_FAILED', `Could not write ${record.setting} for ${record.pipeline} to ${CONTROL_TOPIC}: ${errorMessage(error)}`, { cause: error });
  } finally {
    await producer.close().catch(() => {});
  }
}
