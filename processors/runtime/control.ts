/**
 * The control plane every processor follows: the compacted `sluice.control`
 * topic. Read whole before the first batch is processed, then followed, so a
 * kill switch applies within about a fetch interval, with no restart.
 */
import { followTopic, type Follower } from '../../connectors/kafka/follow.ts';
import { openProducer } from '../../connectors/kafka/admin.ts';
import type { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { framedEncoder } from '../../connectors/registry/registry.ts';
import { SluiceError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { CONTROL_TOPIC, controlKey } from '../../schemas/control.ts';

export const CONTROL_SUBJECT = `${CONTROL_TOPIC}-value`;
export const KILL_SWITCH_MODEL = 'kill_switch.model';

export interface ControlSetting {
  pipeline: string;
  setting: string;
  value: string;
  reason: string | null;
  updated_by: string;
  updated_at: number;
}

export class ControlState {
  private readonly settings = new Map<string, ControlSetting>();
  private readonly listeners: Array<(setting: ControlSetting) => void> = [];

  apply(key: string, setting: ControlSetting | null): void {
    if (setting === null) this.settings.delete(key);
    else this.settings.set(key, setting);
    if (setting) for (const listener of this.listeners) listener(setting);
  }

  get(pipeline: string, setting: string): ControlSetting | undefined {
    return this.settings.get(controlKey(pipeline, setting));
  }

  killSwitchOn(pipeline: string): boolean {
    return this.get(pipeline, KILL_SWITCH_MODEL)?.value === 'on';
  }

  onChange(listener: (setting: ControlSetting) => void): void {
    this.listeners.push(listener);
  }
}

/** Follows the control topic into a ControlState; resolves once caught up. */
export async function followControl(options: {
  brokers: string[];
  catalog: SchemaCatalog;
  clientId: string;
  logger: Logger;
}): Promise<{ state: ControlState; follower: Follower }> {
  const state = new ControlState();
  const pending: Array<{ key: string; value: Buffer | null }> = [];
  const follower = await followTopic({
    brokers: options.brokers,
    topic: CONTROL_TOPIC,
    clientId: options.clientId,
    logger: options.logger,
    onMessage: ({ key, value }) => {
      if (key === null) return;
      pending.push({ key, value });
      void drain();
    },
  });
  // Decoding may need a registry round trip for an unseen schema id; keep order.
  let draining = false;
  async function drain(): Promise<void> {
    if (draining) return;
    draining = true;
    try {
      while (pending.length > 0) {
        const { key, value } = pending[0]!;
        if (value === null) {
          state.apply(key, null);
        } else {
          await options.catalog.prefetch([value]);
          const decoded = options.catalog.decodeSync(value);
          if (decoded.kind === 'decoded') {
            const setting = decoded.value as ControlSetting;
            state.apply(key, setting);
            options.logger.info({ key, value: setting.value, by: setting.updated_by }, 'control setting applied');
          } else {
            options.logger.error({ key, decoded }, 'unreadable control record ignored');
          }
        }
        pending.shift();
      }
    } catch (error) {
      options.logger.warn({ err: errorMessage(error) }, 'control topic decode failed; retrying');
      setTimeout(() => void drain(), 500);
    } finally {
      draining = false;
    }
  }
  await follower.caughtUp;
  while (pending.length > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  return { state, follower };
}

/** Writes one control setting and waits for the broker's acknowledgement. */
export async function writeControl(options: {
  brokers: string[];
  catalog: SchemaCatalog;
  setting: Omit<ControlSetting, 'updated_at'> & { updated_at?: number };
}): Promise<void> {
  const { id, type } = await options.catalog.latest(CONTROL_SUBJECT);
  const record: ControlSetting = { ...options.setting, updated_at: options.setting.updated_at ?? Date.now() };
  const producer = await openProducer(options.brokers, 'sluice-control');
  try {
    await producer.send(CONTROL_TOPIC, [{ key: controlKey(record.pipeline, record.setting), value: framedEncoder(id, type)(record) }]);
  } catch (error) {
    throw new SluiceError('CONTROL_WRITE_FAILED', `Could not write ${record.setting} for ${record.pipeline} to ${CONTROL_TOPIC}: ${errorMessage(error)}`, { cause: error });
  } finally {
    await producer.close().catch(() => {});
  }
}
