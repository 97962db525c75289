/**
 * The Kafka message key of an event sent over HTTP. A pipeline may declare
 * how its events are keyed (`keying` on its plugin: event type and payload in,
 * key out, e.g. the user id, so one user's events stay in order); without one,
 * the event_id is the key, which keeps retries of an event on one partition.
 *
 * `keying` is read structurally because lib/pipeline.ts does not declare it
 * yet (see docs/ingest.md): a plugin that adds it is followed at once.
 */
import type { PipelinePlugin } from '../lib/pipeline.ts';

export type Keying = (eventType: string, payload: Record<string, unknown>, eventId: string) => string | null | undefined;

export function keyingOf(plugin: PipelinePlugin): Keying {
  const declared = (plugin as { keying?: unknown }).keying;
  if (typeof declared === 'function') {
    const keying = declared as Keying;
    return (eventType, payload, eventId) => {
      // A plugin's keying is pure and never throws for data; should it return nothing usable, fall back to the event id.
      const key = keying(eventType, payload, eventId);
      return typeof key === 'string' && key !== '' ? key : eventId;
    };
  }
  return (_eventType, _payload, eventId) => eventId;
}
