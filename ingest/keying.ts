/**
 * The Kafka message key of an event sent over HTTP, as the pipeline's manifest
 * says (`ingest.keying` in lib/pipeline.ts): dotted envelope paths tried in
 * order (`payload.user_id`, so one user's events stay in order), the first
 * non-empty string winning; the event_id when none holds one or the manifest
 * names none. A producer writing to `<p>.raw` directly should key the same
 * way: retries of an event then reach one partition, where the validate
 * stage's duplicate check (per partition) sees them.
 */
import { SluiceError } from '../lib/errors.ts';
import { isRecordObject, ownField } from '../lib/json.ts';
import type { PipelinePlugin } from '../lib/pipeline.ts';

export type Keying = (eventType: string, payload: Record<string, unknown>, eventId: string) => string;

/** The paths a manifest may name: `event_id`, `event_type`, or `payload.<field>[.<field>…]`. */
const KEY_PATH = /^(event_id|event_type|payload(\.[^.]+)+)$/;

export function keyingOf(plugin: PipelinePlugin): Keying {
  const paths = plugin.ingest?.keying ?? [];
  for (const path of paths) {
    if (!KEY_PATH.test(path)) {
      // A manifest is code: a wrong path is a defect found at start, not a silent fallback for every event.
      throw new SluiceError(
        'CONFIG_INVALID',
        `Pipeline ${plugin.kind}: ingest.keying path ${JSON.stringify(path)} is not event_id, event_type or payload.<field>; fix its manifest (pipelines/${plugin.kind}/index.ts).`,
      );
    }
  }
  const steps = paths.map((path) => path.split('.'));
  if (steps.length === 0) return (_eventType, _payload, eventId) => eventId;
  return (eventType, payload, eventId) => {
    for (const [head, ...rest] of steps) {
      const key = head === 'event_id' ? eventId : head === 'event_type' ? eventType : fieldAt(payload, rest);
      if (typeof key === 'string' && key !== '') return key;
    }
    return eventId;
  };
}

/** The value at `path` under `object` (own fields only), or undefined. */
function fieldAt(object: unknown, path: readonly string[]): unknown {
  let current: unknown = object;
  for (const name of path) {
    if (!isRecordObject(current)) return undefined;
    current = ownField(current, name);
  }
  return current;
}
