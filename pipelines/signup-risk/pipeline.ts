/** What sluice knows about the signup-risk pipeline: its topics, owners and shape. */
import type { PipelineDefinition } from '../registry.ts';
import { EVENT_TYPE, PIPELINE } from './types.ts';

export const signupRisk: PipelineDefinition = {
  name: PIPELINE,
  kind: PIPELINE,
  eventType: EVENT_TYPE,
  owners: { team: 'trust-and-safety', oncall: 'trust-oncall' },
};
