/**
 * The shared, compacted control topic `sluice.control`. The key names the
 * setting (`<pipeline>/<setting>`, e.g. `signup-risk/kill_switch.model`), so
 * compaction keeps the latest value of each; every processor reads it whole at
 * start and follows it while running.
 */
export const CONTROL_TOPIC = 'sluice.control';

export const controlRecord = {
  type: 'record',
  name: 'ControlSetting',
  namespace: 'sluice',
  fields: [
    { name: 'pipeline', type: 'string' },
    { name: 'setting', type: 'string', doc: 'kill_switch.model | model.active_version | …' },
    { name: 'value', type: 'string', doc: 'kill_switch.model: "on" or "off"' },
    { name: 'reason', type: ['null', 'string'], default: null },
    { name: 'updated_by', type: 'string' },
    { name: 'updated_at', type: { type: 'long', logicalType: 'timestamp-millis' } },
  ],
} as const;

export const controlKey = (pipeline: string, setting: string): string => `${pipeline}/${setting}`;
