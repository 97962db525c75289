/**
 * Avro contracts of the signup-risk pipeline, one per topic after `raw`. The
 * subject of each is `<topic>-value`, registered under BACKWARD compatibility by
 * `sluice schemas register`; processors only look them up.
 *
 * Evolution rule: add fields with defaults, never remove or retype one.
 */
const timestampMs = { type: 'long', logicalType: 'timestamp-millis' } as const;
const nullable = (type: unknown) => ({ type: ['null', type], default: null });

/** The cleaned, normalized payload of a `user_signed_up` event. */
export const signupPayload = {
  type: 'record',
  name: 'SignupPayload',
  namespace: 'sluice.signup_risk',
  fields: [
    { name: 'user_id', type: 'string' },
    { name: 'email', type: 'string', doc: 'trimmed, lower case' },
    { name: 'email_domain', type: 'string', doc: 'the part after @, lower case' },
    { name: 'country', type: 'string', doc: 'ISO 3166-1 alpha-2, upper case' },
    { name: 'ip_country', ...nullable('string') },
    {
      name: 'signup_channel',
      type: { type: 'enum', name: 'SignupChannel', symbols: ['web', 'ios', 'android', 'api'] },
    },
    { name: 'plan', type: { type: 'enum', name: 'Plan', symbols: ['free', 'pro', 'enterprise'] } },
    { name: 'email_domain_age_days', ...nullable('int') },
    { name: 'signups_from_ip_24h', ...nullable('int') },
    { name: 'referral_code', ...nullable('string') },
  ],
} as const;

const envelopeFields = [
  { name: 'event_id', type: 'string' },
  { name: 'event_type', type: 'string' },
  { name: 'occurred_at', type: timestampMs },
  { name: 'source', type: 'string' },
] as const;

export const validated = {
  type: 'record',
  name: 'Validated',
  namespace: 'sluice.signup_risk',
  doc: 'A raw event that passed the contract, cleaned and normalized.',
  fields: [
    ...envelopeFields,
    { name: 'payload', type: signupPayload },
    { name: 'dropped_fields', type: { type: 'array', items: 'string' }, default: [], doc: 'unknown payload fields removed' },
    { name: 'validated_at', type: timestampMs },
  ],
} as const;

export const scored = {
  type: 'record',
  name: 'Scored',
  namespace: 'sluice.signup_risk',
  doc: 'A validated event with the model score, or a null score when the model is switched off.',
  fields: [
    ...envelopeFields,
    { name: 'payload', type: signupPayload },
    { name: 'score', ...nullable('double') },
    { name: 'model_version', ...nullable('string') },
    { name: 'feature_names', type: { type: 'array', items: 'string' }, default: [] },
    { name: 'feature_values', type: { type: 'array', items: 'double' }, default: [] },
    { name: 'validated_at', type: timestampMs },
    { name: 'scored_at', type: timestampMs },
  ],
} as const;

const decisionFields = [
  { name: 'event_id', type: 'string' },
  { name: 'pipeline', type: 'string' },
  { name: 'decision', type: 'string', doc: 'approve | review | block' },
  {
    name: 'decided_by',
    type: { type: 'enum', name: 'DecidedBy', namespace: 'sluice', symbols: ['model', 'rule', 'human', 'fallback'] },
  },
  { name: 'reasons', type: { type: 'array', items: 'string' } },
  { name: 'score', ...nullable('double') },
  { name: 'model_version', ...nullable('string') },
  { name: 'policy_version', type: 'string' },
  { name: 'decision_version', type: 'int', doc: '1 for the first decision; higher for replays and human corrections' },
  { name: 'occurred_at', type: timestampMs },
  { name: 'decided_at', type: timestampMs },
] as const;

export const decided = {
  type: 'record',
  name: 'Decision',
  namespace: 'sluice.signup_risk',
  doc: 'The decision that stands is the highest decision_version per event_id.',
  fields: [...decisionFields],
} as const;

export const review = {
  type: 'record',
  name: 'ReviewRequest',
  namespace: 'sluice.signup_risk',
  doc: 'A decision of `review`, with what a reviewer needs to resolve it.',
  fields: [...decisionFields, { name: 'payload', type: signupPayload }],
} as const;

/** Value schema per topic suffix. `raw` is JSON or producer-registered Avro; `dlq` keeps original bytes. */
export const topicSchemas = { validated, scored, decided, review } as const;
