import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { MemoryCodec } from '../../connectors/registry/memory.ts';
import { SluiceError } from '../../lib/errors.ts';
import { createLogger } from '../../lib/log.ts';
import type { Policy } from '../../lib/pipeline.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import {
  DEFAULT_THRESHOLDS,
  disposableDomainMatch,
  parseDisposableDomains,
  policyVersion,
  REASONS,
  type Thresholds,
  thresholdsProblem,
} from '../../pipelines/signup-risk/policy.ts';
import { DECIDE_DEFAULTS, type DecideConfig, decideConfigFromEnv, loadDecidePolicy, signupRiskPolicy } from '../../pipelines/signup-risk/policy-config.ts';
import type { Plan, ScoredRecord, SignupPayload } from '../../pipelines/signup-risk/types.ts';
import { decideStage } from '../../processors/decide/runner.ts';
import { type DecideContext, type DecisionCommon, decide } from '../../processors/decide/transform.ts';
import { stageConfigFromEnv } from '../../processors/runtime/config.ts';
import type { Outcome } from '../../processors/runtime/types.ts';

const NOW_MS = 1_767_225_600_000;
const shipped = loadDecidePolicy(decideConfigFromEnv({}));

/** The signup-risk policy as the decide stage loads it (the plugin's PolicyModule), with the shipped list. */
const policies = new Map<string, Policy<SignupPayload>>();
function policyWith(thresholds: Thresholds = DEFAULT_THRESHOLDS): Policy<SignupPayload> {
  const key = `${thresholds.blockAt}/${thresholds.reviewAt}`;
  let policy = policies.get(key);
  if (policy === undefined) {
    policy = signupRiskPolicy.load({ thresholds, disposableDomainsFile: DECIDE_DEFAULTS.disposableDomainsFile });
    policies.set(key, policy);
  }
  return policy;
}

function payload(overrides: Partial<SignupPayload> = {}): SignupPayload {
  return {
    user_id: 'u-1',
    email: 'alice@example.com',
    email_domain: 'example.com',
    country: 'DE',
    ip_country: 'DE',
    signup_channel: 'web',
    plan: 'free',
    email_domain_age_days: 3650,
    signups_from_ip_24h: 1,
    referral_code: null,
    ...overrides,
  };
}

function scored(score: number | null, payloadOverrides: Partial<SignupPayload> = {}): ScoredRecord {
  return {
    event_id: 'evt-1',
    event_type: 'user_signed_up',
    occurred_at: 1_767_225_000_000,
    source: 'signup-service',
    payload: payload(payloadOverrides),
    score,
    label: null,
    class_names: [],
    class_scores: [],
    model_version: score === null ? null : 'signup-risk-2026-01-01',
    feature_names: ['x'],
    feature_values: [1],
    validated_at: 1_767_225_100_000,
    scored_at: 1_767_225_200_000,
  };
}

/** The decide stage's context for signup-risk; `thresholds` picks the policy loaded with them. */
function context(overrides: { killSwitchOn?: boolean; thresholds?: Thresholds } = {}): DecideContext<SignupPayload> {
  return {
    pipeline: 'signup-risk',
    policy: policyWith(overrides.thresholds),
    reviewDecision: signupRisk.reviewDecision,
    killSwitchOn: overrides.killSwitchOn ?? false,
    now: () => NOW_MS,
  };
}

/** The decision on `decided`, after checking the review topic gets exactly the review decisions. */
function decisionOf(outcome: Outcome<DecisionCommon>): DecisionCommon {
  assert.equal(outcome.kind, 'emit');
  if (outcome.kind !== 'emit') throw new Error('unreachable');
  const decided = outcome.outputs.filter((output) => output.to === 'decided');
  const review = outcome.outputs.filter((output) => output.to === 'review');
  assert.equal(decided.length, 1);
  assert.equal(outcome.outputs.length, decided.length + review.length);
  const decision = decided[0]!.value;
  assert.equal(review.length, decision.decision === 'review' ? 1 : 0);
  assert.equal(outcome.eventId, decision.event_id);
  return decision;
}

const verdict = (record: ScoredRecord, ctx = context()) => {
  const { decision, decided_by, reasons } = decisionOf(decide(record, ctx));
  return { decision, decided_by, reasons };
};

describe('decide: policy', () => {
  it('approves a low score, by the model', () => {
    assert.deepEqual(verdict(scored(0.1)), {
      decision: 'approve',
      decided_by: 'model',
      reasons: [REASONS.scoreBelowReviewThreshold],
    });
  });

  it('blocks a disposable email domain by rule, whatever the score', () => {
    for (const score of [0, 0.6, 0.99]) {
      assert.deepEqual(verdict(scored(score, { email: 'x@mailinator.com', email_domain: 'mailinator.com' })), {
        decision: 'block',
        decided_by: 'rule',
        reasons: [REASONS.disposableEmailDomain],
      });
    }
  });

  it('blocks subdomains of a disposable domain, but not look-alikes', () => {
    assert.equal(verdict(scored(0.1, { email_domain: 'a.b.mailinator.com' })).decision, 'block');
    assert.equal(verdict(scored(0.1, { email_domain: 'notmailinator.com' })).decision, 'approve');
    assert.equal(verdict(scored(0.1, { email_domain: 'mailinator.com.example.org' })).decision, 'approve');
  });

  it('blocks an enterprise signup at a disposable domain (the rule is not the model)', () => {
    assert.equal(verdict(scored(0.1, { plan: 'enterprise', email_domain: 'yopmail.com' })).decision, 'block');
  });

  it('blocks by model at and above the block threshold', () => {
    for (const score of [0.9, 0.95, 1]) {
      assert.deepEqual(verdict(scored(score)), {
        decision: 'block',
        decided_by: 'model',
        reasons: [REASONS.scoreAboveBlockThreshold],
      });
    }
  });

  it('never blocks an enterprise signup automatically: review, with the reason', () => {
    for (const score of [0.9, 1]) {
      const result = verdict(scored(score, { plan: 'enterprise' }));
      assert.equal(result.decision, 'review');
      assert.equal(result.decided_by, 'rule');
      assert.ok(result.reasons.includes(REASONS.enterpriseNeverAutoBlocked));
    }
    for (const plan of ['free', 'pro'] as Plan[]) assert.equal(verdict(scored(0.95, { plan })).decision, 'block');
  });

  it('reviews by model at and above the review threshold, below the block threshold', () => {
    for (const score of [0.5, 0.7, 0.8999999]) {
      assert.deepEqual(verdict(scored(score)), {
        decision: 'review',
        decided_by: 'model',
        reasons: [REASONS.scoreAboveReviewThreshold],
      });
    }
    assert.equal(verdict(scored(0.7, { plan: 'enterprise' })).decision, 'review');
  });

  it('approves just below the review threshold', () => {
    for (const score of [0, 0.4999999]) assert.equal(verdict(scored(score)).decision, 'approve');
  });

  it('follows the thresholds the policy was loaded with', () => {
    const ctx = context({ thresholds: { blockAt: 0.7, reviewAt: 0.3 } });
    assert.equal(verdict(scored(0.29), ctx).decision, 'approve');
    assert.equal(verdict(scored(0.3), ctx).decision, 'review');
    assert.equal(verdict(scored(0.69), ctx).decision, 'review');
    assert.equal(verdict(scored(0.7), ctx).decision, 'block');
    const equal = context({ thresholds: { blockAt: 0.6, reviewAt: 0.6 } });
    assert.equal(verdict(scored(0.59), equal).decision, 'approve');
    assert.equal(verdict(scored(0.6), equal).decision, 'block');
  });
});

describe('decide: kill switch and missing scores', () => {
  it('ignores a score present when the kill switch is on: review by fallback', () => {
    for (const score of [0, 0.6, 0.99, null]) {
      assert.deepEqual(verdict(scored(score), context({ killSwitchOn: true })), {
        decision: 'review',
        decided_by: 'fallback',
        reasons: [REASONS.modelSwitchedOff],
      });
    }
  });

  it('still blocks a disposable domain by rule with the kill switch on', () => {
    assert.deepEqual(verdict(scored(0.1, { email_domain: 'x.guerrillamail.com' }), context({ killSwitchOn: true })), {
      decision: 'block',
      decided_by: 'rule',
      reasons: [REASONS.disposableEmailDomain],
    });
  });

  it('falls back to review on a null score with the kill switch off', () => {
    assert.deepEqual(verdict(scored(null)), {
      decision: 'review',
      decided_by: 'fallback',
      reasons: [REASONS.noModelScore],
    });
    assert.equal(verdict(scored(null, { plan: 'enterprise' })).decision, 'review');
  });

  it('falls back to review on a score that is not a probability', () => {
    for (const score of [Number.NaN, Number.POSITIVE_INFINITY, -0.1, 1.5]) {
      assert.deepEqual(verdict(scored(score)), {
        decision: 'review',
        decided_by: 'fallback',
        reasons: [REASONS.invalidModelScore],
      });
    }
  });
});

describe('decide: records', () => {
  it('builds the decision record', () => {
    const decision = decisionOf(decide(scored(0.2), context()));
    assert.deepEqual(decision, {
      event_id: 'evt-1',
      pipeline: 'signup-risk',
      decision: 'approve',
      decided_by: 'model',
      reasons: [REASONS.scoreBelowReviewThreshold],
      score: 0.2,
      model_version: 'signup-risk-2026-01-01',
      policy_version: shipped.policyVersion,
      decision_version: 1,
      occurred_at: 1_767_225_000_000,
      decided_at: NOW_MS,
      replay_id: null,
      shadow_model_version: null,
      shadow_score: null,
      shadow_decision: null,
    });
  });

  it('writes a review decision to review too, with the payload', () => {
    const record = scored(0.6, { plan: 'pro' });
    const outcome = decide(record, context());
    assert.equal(outcome.kind, 'emit');
    if (outcome.kind !== 'emit') return;
    assert.deepEqual(
      outcome.outputs.map((output) => output.to),
      ['decided', 'review'],
    );
    const [decided, review] = outcome.outputs;
    assert.deepEqual(review!.value, { ...decided!.value, payload: record.payload });
  });

  it('writes fallback and enterprise reviews to review too', () => {
    for (const [record, ctx] of [
      [scored(0.1), context({ killSwitchOn: true })],
      [scored(null), context()],
      [scored(0.99, { plan: 'enterprise' }), context()],
    ] as const) {
      const outcome = decide(record, ctx);
      assert.ok(outcome.kind === 'emit' && outcome.outputs.some((output) => output.to === 'review'));
    }
  });

  it('hands the policy the event and the model\'s view of it, and appends its own fields after the common ones', () => {
    const seen: unknown[] = [];
    const policy: Policy<SignupPayload> = {
      version: 'policy-test',
      decide: (input, settings) => {
        seen.push({ input, settings });
        return { decision: 'escalate', decidedBy: 'model', reasons: ['top_class'], fields: { queue: 'billing', priority: 2 } };
      },
    };
    const record: ScoredRecord = { ...scored(0.7), label: 'billing', class_names: ['billing', 'bug'], class_scores: [0.7, 0.3] };
    const outcome = decide(record, { pipeline: 'p', policy, reviewDecision: 'escalate', killSwitchOn: true, now: () => NOW_MS });
    assert.deepEqual(seen, [
      {
        input: { eventType: 'user_signed_up', payload: record.payload, score: 0.7, label: 'billing', classScores: { billing: 0.7, bug: 0.3 } },
        settings: { killSwitchOn: true },
      },
    ]);
    assert.ok(outcome.kind === 'emit');
    // The pipeline's review decision, whatever its name, goes to review too.
    assert.deepEqual(
      outcome.outputs.map((output) => output.to),
      ['decided', 'review'],
    );
    const decision = outcome.outputs[0]!.value;
    assert.deepEqual(Object.keys(decision), [
      'event_id',
      'pipeline',
      'decision',
      'decided_by',
      'reasons',
      'score',
      'model_version',
      'policy_version',
      'decision_version',
      'occurred_at',
      'decided_at',
      'queue',
      'priority',
      'replay_id',
      'shadow_model_version',
      'shadow_score',
      'shadow_decision',
    ]);
    assert.equal(decision.pipeline, 'p');
    assert.equal(decision.decision, 'escalate');
    assert.equal(decision.policy_version, 'policy-test');
    assert.equal(decision.queue, 'billing');
    assert.equal(decision.priority, 2);
  });

  it('does not write approvals or blocks to review', () => {
    for (const record of [scored(0.1), scored(0.95), scored(0.5, { email_domain: 'yopmail.com' })]) {
      const outcome = decide(record, context());
      assert.ok(outcome.kind === 'emit');
      assert.deepEqual(
        outcome.outputs.map((output) => output.to),
        ['decided'],
      );
    }
  });
});

describe('decide: disposable-domain list and policy version', () => {
  it('ships a few dozen well-known disposable domains', () => {
    assert.ok(shipped.disposableDomains.size >= 40);
    for (const domain of ['mailinator.com', 'guerrillamail.com', '10minutemail.com', 'yopmail.com', 'trashmail.com', 'sharklasers.com']) {
      assert.ok(shipped.disposableDomains.has(domain), domain);
    }
    assert.ok([...shipped.disposableDomains].some((domain) => domain.startsWith('tempmail')));
    assert.ok(!shipped.disposableDomains.has('gmail.com'));
  });

  it('matches a domain or its parents', () => {
    const set = new Set(['mailinator.com']);
    assert.equal(disposableDomainMatch('mailinator.com', set), 'mailinator.com');
    assert.equal(disposableDomainMatch('A.B.Mailinator.com', set), 'mailinator.com');
    assert.equal(disposableDomainMatch('mailinator.co', set), null);
    assert.equal(disposableDomainMatch('notmailinator.com', set), null, 'a parent is a whole label suffix, not a string suffix');
    assert.equal(disposableDomainMatch('com', set), null);
    assert.equal(disposableDomainMatch('', new Set(['', 'com'])), '', 'the whole domain is tried first, even an empty one');
  });

  it('parses comments, blank lines and case, and lists every bad line', () => {
    assert.deepEqual([...parseDisposableDomains('# header\n\nMailinator.com  # the classic\r\nyopmail.com\n')], [
      'mailinator.com',
      'yopmail.com',
    ]);
    assert.throws(
      () => parseDisposableDomains('ok.com\nnot a domain\ncom\n'),
      (error) => error instanceof SluiceError && error.code === 'CONFIG_INVALID' && /line 2/.test(error.message) && /line 3/.test(error.message),
    );
  });

  it('derives policy_version deterministically from thresholds and domains', () => {
    const domains = ['b.com', 'a.com'];
    const version = policyVersion({ blockAt: 0.9, reviewAt: 0.5 }, domains);
    assert.match(version, /^policy-[0-9a-f]{12}$/);
    assert.equal(policyVersion({ blockAt: 0.9, reviewAt: 0.5 }, ['a.com', 'b.com', 'a.com']), version);
    assert.notEqual(policyVersion({ blockAt: 0.8, reviewAt: 0.5 }, domains), version);
    assert.notEqual(policyVersion({ blockAt: 0.9, reviewAt: 0.4 }, domains), version);
    assert.notEqual(policyVersion({ blockAt: 0.9, reviewAt: 0.5 }, ['a.com']), version);
    assert.equal(shipped.policyVersion, policyVersion(DEFAULT_THRESHOLDS, shipped.disposableDomains));
  });
});

describe('decide: config', () => {
  /** Both ways the policy's variables are read: directly, and as the decide stage parses the plugin's configSchema with its other settings. */
  const parsers: Array<[string, (env: NodeJS.ProcessEnv) => DecideConfig]> = [
    ['decideConfigFromEnv', (env) => decideConfigFromEnv(env)],
    ['the plugin\'s configSchema', (env) => stageConfigFromEnv('decide', decideStage.settings(signupRisk), env).policy as DecideConfig],
  ];

  it('defaults to 0.9 / 0.5 and the shipped list', () => {
    for (const [name, parse] of parsers) {
      assert.deepEqual(
        parse({}),
        {
          thresholds: { blockAt: 0.9, reviewAt: 0.5 },
          disposableDomainsFile: DECIDE_DEFAULTS.disposableDomainsFile,
        },
        name,
      );
    }
    assert.ok(readFileSync(DECIDE_DEFAULTS.disposableDomainsFile, 'utf8').includes('mailinator.com'));
  });

  it('reads thresholds and the list path from the environment', () => {
    const env = {
      SLUICE_BLOCK_THRESHOLD: '0.8',
      SLUICE_REVIEW_THRESHOLD: '0.25',
      SLUICE_DISPOSABLE_DOMAINS_FILE: '/etc/sluice/domains.txt',
    };
    for (const [name, parse] of parsers) {
      assert.deepEqual(parse(env), { thresholds: { blockAt: 0.8, reviewAt: 0.25 }, disposableDomainsFile: '/etc/sluice/domains.txt' }, name);
    }
    const policy = loadDecidePolicy(decideConfigFromEnv(env), (path) => {
      assert.equal(path, '/etc/sluice/domains.txt');
      return 'example-throwaway.com\n';
    });
    assert.deepEqual([...policy.disposableDomains], ['example-throwaway.com']);
    assert.notEqual(policy.policyVersion, shipped.policyVersion);
  });

  it('rejects out-of-range, malformed, empty or inverted thresholds with CONFIG_INVALID', () => {
    const bad = [
      { SLUICE_BLOCK_THRESHOLD: '1.5' },
      { SLUICE_BLOCK_THRESHOLD: '-0.1' },
      { SLUICE_BLOCK_THRESHOLD: '' },
      { SLUICE_BLOCK_THRESHOLD: 'high' },
      { SLUICE_REVIEW_THRESHOLD: 'NaN' },
      { SLUICE_BLOCK_THRESHOLD: '0.4' }, // below the default review threshold
      { SLUICE_BLOCK_THRESHOLD: '0.6', SLUICE_REVIEW_THRESHOLD: '0.7' },
      { SLUICE_DISPOSABLE_DOMAINS_FILE: ' ' },
    ];
    for (const [name, parse] of parsers) {
      for (const env of bad) {
        assert.throws(
          () => parse(env),
          (error) => error instanceof SluiceError && error.code === 'CONFIG_INVALID',
          `${name}: ${JSON.stringify(env)}`,
        );
      }
    }
  });

  it('accepts equal thresholds and the bounds 0 and 1', () => {
    for (const [name, parse] of parsers) {
      assert.deepEqual(
        parse({ SLUICE_BLOCK_THRESHOLD: '1', SLUICE_REVIEW_THRESHOLD: '0' }).thresholds,
        {
          blockAt: 1,
          reviewAt: 0,
        },
        name,
      );
      assert.deepEqual(
        parse({ SLUICE_BLOCK_THRESHOLD: '0.7', SLUICE_REVIEW_THRESHOLD: '0.7' }).thresholds,
        {
          blockAt: 0.7,
          reviewAt: 0.7,
        },
        name,
      );
    }
  });

  it('loads the policy in force from its config: the version names thresholds and list', () => {
    assert.equal(signupRisk.policy, signupRiskPolicy);
    assert.equal(signupRiskPolicy.load(decideConfigFromEnv({})).version, shipped.policyVersion);
    assert.equal(policyWith({ blockAt: 0.8, reviewAt: 0.25 }).version, policyVersion({ blockAt: 0.8, reviewAt: 0.25 }, shipped.disposableDomains));
    assert.throws(
      () => signupRiskPolicy.load({ thresholds: DEFAULT_THRESHOLDS, disposableDomainsFile: '/nonexistent/sluice/domains.txt' }),
      (error) => error instanceof SluiceError && error.code === 'CONFIG_INVALID',
    );
    assert.throws(
      () => signupRiskPolicy.load({ thresholds: { blockAt: 0.5, reviewAt: 0.9 }, disposableDomainsFile: DECIDE_DEFAULTS.disposableDomainsFile }),
      (error) => error instanceof SluiceError && error.code === 'CONFIG_INVALID',
    );
  });

  it('reports an unreadable list file as CONFIG_INVALID', () => {
    const config = { thresholds: DEFAULT_THRESHOLDS, disposableDomainsFile: '/nonexistent/sluice/domains.txt' };
    assert.throws(
      () => loadDecidePolicy(config),
      (error) => error instanceof SluiceError && error.code === 'CONFIG_INVALID',
    );
  });

  it('checks thresholds handed to loadDecidePolicy directly', () => {
    assert.equal(thresholdsProblem(DEFAULT_THRESHOLDS), null);
    assert.notEqual(thresholdsProblem({ blockAt: 0.5, reviewAt: 0.9 }), null);
    assert.notEqual(thresholdsProblem({ blockAt: Number.NaN, reviewAt: 0.1 }), null);
    assert.throws(
      () => loadDecidePolicy({ thresholds: { blockAt: 0.5, reviewAt: 0.9 }, disposableDomainsFile: DECIDE_DEFAULTS.disposableDomainsFile }),
      (error) => error instanceof SluiceError && error.code === 'CONFIG_INVALID',
    );
  });
});

describe('decide: reading scored records', () => {
  it('reads them without the feature arrays, which no decision uses, and decides each as it decides the whole record', async () => {
    const settings = stageConfigFromEnv('decide', decideStage.settings(signupRisk), {});
    const services = { pipeline: { name: 'signup-risk', plugin: signupRisk }, control: { killSwitchMode: () => 'model' }, logger: createLogger({}, 'silent'), now: () => NOW_MS };
    const definition = await decideStage.factory(settings)(services as never);
    assert.deepEqual(definition.inputSkips, ['feature_names', 'feature_values']);
    const codec = new MemoryCodec();
    codec.register('signup-risk.scored-value', JSON.parse(readFileSync(new URL('../../schemas/signup-risk/scored.avsc', import.meta.url), 'utf8')));
    const encode = codec.encoderForSync('signup-risk.scored-value');
    const source = { topic: 'signup-risk.scored', partition: 0, offset: '0', key: null, value: null, headers: {}, timestampMs: NOW_MS };
    const records = [scored(0.97), scored(0.6), scored(0.02), scored(null), scored(0.3, { plan: 'enterprise' as Plan }), scored(0.2, { email_domain: 'mailinator.com' })];
    for (const record of records) {
      const framed = encode({ ...record, feature_names: ['email_domain_age_days', 'signups_from_ip_24h'], feature_values: [3650, 1] });
      const read = codec.decodeSync(framed, definition.inputSkips);
      const whole = codec.decodeSync(framed);
      assert.ok(read.kind === 'decoded' && whole.kind === 'decoded');
      assert.equal('feature_names' in (read.value as object) || 'feature_values' in (read.value as object), false, 'the feature arrays were built');
      // Compared as data: the two decodes build the payload with two classes of the same shape.
      const asData = async (value: unknown) => JSON.parse(JSON.stringify(await definition.process([{ source, value }])));
      assert.deepEqual(await asData(read.value), await asData(whole.value), `score ${record.score}`);
    }
  });
});
