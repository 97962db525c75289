/** Route schemas: they validate requests and generate /openapi.json. Error bodies are {"error":{"code","message"}}. */

const error = (description: string) => ({
  description,
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } }, required: ['code', 'message'] } },
  required: ['error'],
});

const E401 = error('UNAUTHENTICATED: no valid session');
const E403 = error('CSRF_TOKEN_INVALID: the x-csrf-token header is missing or wrong; FORBIDDEN: not allowed for this role; PASSWORD_CHANGE_REQUIRED: replace the one-time password first');
const E404 = error('PIPELINE_UNKNOWN or ITEM_NOT_FOUND');
const sessionAuth = [{ session: [] }];
const stateChanging = [{ session: [], csrf: [] }];

const resolution = {
  type: ['object', 'null'],
  description: 'How the item was closed: by a reviewer (outcome human) or by its SLA (outcome expired)',
  properties: {
    outcome: { type: 'string', enum: ['human', 'expired'] },
    by: { type: 'string' },
    at: { type: 'integer', description: 'epoch ms' },
    decision: { type: 'string' },
    reason: { type: 'string' },
    fields: { type: 'object', additionalProperties: { type: 'string' } },
    decision_version: { type: 'integer' },
  },
};

export const item = {
  type: 'object',
  properties: {
    item_id: { type: 'string' },
    pipeline: { type: 'string' },
    event_id: { type: 'string' },
    kind: { type: 'string', enum: ['review', 'audit'] },
    status: { type: 'string', enum: ['open', 'resolved', 'expired', 'superseded'], description: 'superseded: a replay re-decided the event; its decision stands and the item needs no review' },
    decision: { type: 'string', description: 'the decision under review' },
    decided_by: { type: 'string' },
    decision_version: { type: 'integer', description: 'of the decision under review; a resolution writes this + 1' },
    score: { type: ['number', 'null'] },
    reasons: { type: 'array', items: { type: 'string' } },
    payload: { description: "the event's validated payload" },
    fields: { type: 'object', additionalProperties: true, description: "the pipeline's own decided fields of the decision under review (ticket-triage: queue, priority)" },
    model_version: { type: ['string', 'null'] },
    policy_version: { type: 'string' },
    occurred_at: { type: 'integer', description: 'epoch ms' },
    created_at: { type: 'integer', description: 'epoch ms: when the decision under review was made' },
    due_at: { type: 'integer', description: 'epoch ms: when it expires to the fallback decision' },
    claimed_by: { type: ['string', 'null'] },
    claim_expires_at: { type: ['integer', 'null'] },
    resolution,
    superseded_by: {
      type: ['object', 'null'],
      properties: { replay_id: { type: ['string', 'null'] }, decision: { type: 'string' }, decision_version: { type: 'integer' } },
    },
  },
  required: ['item_id', 'event_id', 'kind', 'status', 'decision', 'score', 'reasons', 'payload', 'model_version', 'created_at', 'due_at', 'claimed_by'],
};

const itemParams = {
  type: 'object',
  properties: { pipeline: { type: 'string', maxLength: 200 }, item_id: { type: 'string', maxLength: 64 } },
  required: ['pipeline', 'item_id'],
};
const pipelineParams = { type: 'object', properties: { pipeline: { type: 'string', maxLength: 200 } }, required: ['pipeline'] };

const session = {
  type: 'object',
  properties: {
    username: { type: 'string' },
    role: { type: 'string', enum: ['reviewer', 'admin'] },
    csrf_token: { type: 'string' },
    expires_at: { type: 'integer' },
    must_change_password: { type: 'boolean', description: 'true after signing in with a one-time password: only POST /api/session/password is allowed until then' },
  },
  required: ['username', 'role', 'csrf_token'],
};

export const signIn = {
  summary: 'Sign in',
  description: 'Answers the session cookie (HttpOnly, SameSite=Strict) and the CSRF token to send in x-csrf-token.',
  tags: ['session'],
  body: {
    type: 'object',
    properties: { username: { type: 'string', minLength: 1, maxLength: 64 }, password: { type: 'string', minLength: 1, maxLength: 256 } },
    required: ['username', 'password'],
    additionalProperties: false,
  },
  response: { 200: session, 400: error('INVALID_REQUEST'), 401: error('INVALID_CREDENTIALS'), 429: error('TOO_MANY_ATTEMPTS: five failures for this user name within 15 minutes; see Retry-After') },
};
export const whoAmI = { summary: 'The current session', tags: ['session'], security: sessionAuth, response: { 200: session, 401: E401 } };
export const signOut = { summary: 'Sign out', tags: ['session'], security: stateChanging, response: { 204: { type: 'null', description: 'signed out' }, 401: E401, 403: E403 } };

export const changePassword = {
  summary: 'Replace your password',
  description: 'Required after signing in with the one-time password that add-reviewer printed; every other route answers 403 PASSWORD_CHANGE_REQUIRED until then.',
  tags: ['session'],
  security: stateChanging,
  body: {
    type: 'object',
    properties: { current_password: { type: 'string', minLength: 1, maxLength: 256 }, new_password: { type: 'string', minLength: 1, maxLength: 256 } },
    required: ['current_password', 'new_password'],
    additionalProperties: false,
  },
  response: { 204: { type: 'null', description: 'changed' }, 400: error('WRONG_PASSWORD, PASSWORD_TOO_WEAK, INVALID_REQUEST'), 401: E401, 403: E403 },
};

export const pipelines = {
  summary: 'The pipelines this service serves',
  tags: ['queue'],
  security: sessionAuth,
  response: {
    200: {
      type: 'object',
      properties: {
        pipelines: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              kind: { type: 'string' },
              decisions: { type: 'array', items: { type: 'string' }, description: 'what a reviewer may decide' },
              fields: {
                type: 'array',
                description: "the pipeline's own decided fields a resolution must give",
                items: { type: 'object', properties: { name: { type: 'string' }, values: { type: ['array', 'null'], items: { type: 'string' } } } },
              },
              counts: { type: 'object', properties: { open: { type: 'integer' }, resolved: { type: 'integer' }, expired: { type: 'integer' } } },
              settings: {
                type: 'object',
                description: "the pipeline's review settings: its manifest's, under SLUICE_REVIEW_SLA_SECONDS and SLUICE_REVIEW_LEASE_SECONDS",
                properties: {
                  sla_seconds: { type: 'number' },
                  lease_seconds: { type: 'number' },
                  fallback_decision: { type: 'string', description: 'what an expired review item is decided' },
                  audit_rate: { type: 'number', description: 'the share of automatic decisions the decide stage samples as audit items' },
                },
              },
            },
          },
        },
      },
    },
    401: E401,
  },
};

export const listItems = {
  summary: 'The queue of a pipeline, soonest due first',
  tags: ['queue'],
  security: sessionAuth,
  params: pipelineParams,
  querystring: { type: 'object', properties: { status: { type: 'string', enum: ['open', 'resolved', 'expired', 'superseded', 'all'], default: 'open' } }, additionalProperties: false },
  response: { 200: { type: 'object', properties: { items: { type: 'array', items: item } } }, 400: error('INVALID_REQUEST'), 401: E401, 404: E404 },
};

const itemResponse = { type: 'object', properties: { item } };

export const getItem = { summary: 'One item', tags: ['queue'], security: sessionAuth, params: itemParams, response: { 200: itemResponse, 401: E401, 404: E404 } };

export const claim = {
  summary: 'Claim an item',
  description: 'Takes the lease on the item (10 minutes by default), or renews your own.',
  tags: ['queue'],
  security: stateChanging,
  params: itemParams,
  response: { 200: itemResponse, 401: E401, 403: E403, 404: E404, 409: error('CLAIMED_BY_OTHER: another reviewer holds the lease; ALREADY_RESOLVED: the item is closed'), 503: error('KAFKA_UNAVAILABLE') },
};

export const release = {
  summary: 'Release your claim',
  tags: ['queue'],
  security: stateChanging,
  params: itemParams,
  response: { 200: itemResponse, 401: E401, 403: E403, 404: E404, 409: error('CLAIMED_BY_OTHER or ALREADY_RESOLVED') },
};

export const resolve = {
  summary: 'Resolve an item',
  description:
    "Writes the human decision to <p>.decided (decided_by human, decision_version one above the decision under review) and the label to <p>.feedback in one Kafka transaction, exactly once. Give the pipeline's own decided fields as well (ticket-triage: queue and priority; GET /api/pipelines lists them).",
  tags: ['queue'],
  security: stateChanging,
  params: itemParams,
  body: {
    type: 'object',
    properties: {
      decision: { type: 'string', description: 'one of the pipeline’s decisions other than its review decision' },
      reason: { type: 'string', maxLength: 4_000, description: 'why; required' },
      queue: { type: 'string', description: 'ticket-triage' },
      priority: { type: 'string', description: 'ticket-triage' },
    },
    additionalProperties: { type: 'string' },
  },
  response: {
    200: itemResponse,
    400: error('REASON_REQUIRED, DECISION_NOT_ALLOWED, FIELD_REQUIRED, FIELD_INVALID, INVALID_REQUEST'),
    401: E401,
    403: E403,
    404: E404,
    409: error('ALREADY_RESOLVED (no second decision is written), CLAIMED_BY_OTHER, RESOLUTION_IN_PROGRESS'),
    503: error('KAFKA_UNAVAILABLE'),
  },
};

const reviewer = { type: 'object', properties: { username: { type: 'string' }, role: { type: 'string' }, created_at: { type: 'integer' }, created_by: { type: 'string' } } };

export const listReviewers = {
  summary: 'Reviewer accounts (admins)',
  tags: ['accounts'],
  security: sessionAuth,
  response: { 200: { type: 'object', properties: { reviewers: { type: 'array', items: reviewer } } }, 401: E401, 403: E403 },
};

export const addReviewer = {
  summary: 'Add a reviewer (admins); answers the one-time password',
  tags: ['accounts'],
  security: stateChanging,
  body: {
    type: 'object',
    properties: { username: { type: 'string', minLength: 2, maxLength: 64 }, role: { type: 'string', enum: ['reviewer', 'admin'], default: 'reviewer' } },
    required: ['username'],
    additionalProperties: false,
  },
  response: {
    201: { type: 'object', properties: { username: { type: 'string' }, role: { type: 'string' }, password: { type: 'string' } } },
    400: error('INVALID_REQUEST'),
    401: E401,
    403: E403,
    409: error('REVIEWER_EXISTS'),
  },
};
