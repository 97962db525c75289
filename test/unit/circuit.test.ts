/**
 * The circuit breaker's bookkeeping and the tiered kill switch's reading of
 * the control topic, without a broker: when a partition opens, how a probe
 * after the cool-down decides, what the settings resolve to, and what each
 * kill-switch mode makes of a decision.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import { decide, KILL_SWITCH_REVIEW_REASON } from '../../processors/decide/transform.ts';
import { CIRCUIT_DEFAULTS, CircuitBreaker } from '../../processors/runtime/circuit.ts';
import { circuitSetting, ControlState, KILL_SWITCH_MODEL, killSwitchModeOf } from '../../processors/runtime/control.ts';
import { circuitSettingsOf } from '../../processors/runtime/runtime.ts';
import { controlKey } from '../../lib/contracts.ts';

const settings = { threshold: 0.5, window: 10, minRecords: 4, coolDownMs: 1_000 };
const flags = (dead: number, alive: number): boolean[] => [...Array<boolean>(dead).fill(true), ...Array<boolean>(alive).fill(false)];

describe('circuit breaker', () => {
  it('opens a partition once more than the threshold of its last records were dead-lettered, and only that partition', () => {
    const breaker = new CircuitBreaker(settings);
    assert.equal(breaker.committed(0, flags(3, 0)), null, 'no verdict below minRecords');
    const trip = breaker.committed(0, flags(1, 0));
    assert.deepEqual(trip, { partition: 0, deadLetters: 4, records: 4, probe: false });
    assert.equal(breaker.state(0), 'open');
    assert.equal(breaker.committed(1, flags(2, 8)), null);
    assert.deepEqual(breaker.open(), [0]);
  });

  it('judges a sliding window: old dead letters fall out of it', () => {
    const breaker = new CircuitBreaker(settings);
    assert.equal(breaker.committed(0, flags(5, 5)), null, 'exactly half is not more than half');
    // Ten good records push the five dead letters out of the window of ten.
    assert.equal(breaker.committed(0, flags(0, 10)), null);
    assert.equal(breaker.committed(0, flags(5, 0)), null, '5 of the last 10');
    assert.notEqual(breaker.committed(0, flags(1, 0)), null, '6 of the last 10');
  });

  it('probes after the cool-down, only on a partition this instance owns: a bad probe opens it again, a good one closes it', () => {
    const breaker = new CircuitBreaker(settings);
    breaker.committed(0, flags(10, 0));
    breaker.markOpen(0, 5_000);
    breaker.committed(1, flags(10, 0));
    breaker.markOpen(1, 5_000);
    assert.deepEqual(breaker.coolDown(5_500, () => true), [], 'cool-down not over');
    assert.deepEqual(breaker.coolDown(6_000, (p) => p === 0), [0], 'partition 1 belongs to another instance');
    assert.equal(breaker.state(0), 'probing');
    assert.deepEqual(breaker.committed(0, flags(3, 1)), { partition: 0, deadLetters: 3, records: 4, probe: true });
    assert.equal(breaker.state(0), 'open');
    breaker.markOpen(0, 7_000);
    assert.deepEqual(breaker.coolDown(8_000, () => true), [0, 1]);
    assert.equal(breaker.committed(0, flags(1, 3)), 'closed');
    assert.equal(breaker.state(0), 'closed');
    // Closed with an empty window: the probe's records and the earlier burst do not count again.
    assert.equal(breaker.committed(0, flags(3, 0)), null);
  });

  it('resets to closed with an empty window', () => {
    const breaker = new CircuitBreaker(settings);
    breaker.committed(2, flags(9, 0));
    breaker.close(2);
    assert.equal(breaker.state(2), 'closed');
    assert.equal(breaker.committed(2, flags(3, 0)), null);
  });

  it('never opens with threshold 1', () => {
    const breaker = new CircuitBreaker({ ...settings, threshold: 1 });
    assert.equal(breaker.committed(0, flags(10, 0)), null);
  });

  it('takes the manifest over the defaults and the environment over both', () => {
    assert.deepEqual(circuitSettingsOf(undefined, {}), CIRCUIT_DEFAULTS);
    assert.deepEqual(circuitSettingsOf({ threshold: 0.3, coolDownSeconds: 60 }, { window: 200 }), { threshold: 0.3, window: 200, minRecords: 100, coolDownMs: 60_000 });
    assert.equal(circuitSettingsOf(undefined, { window: 20 }).minRecords, 20, 'minRecords never above the window');
  });
});

describe('tiered kill switch', () => {
  const setting = (value: string, name = KILL_SWITCH_MODEL) => ({ pipeline: 'p', setting: name, value, reason: 'why', updated_by: 'me', updated_at: 1_000 });

  it('reads the modes, the old on/off values, and an unknown value as rules', () => {
    assert.equal(killSwitchModeOf(undefined), 'model');
    assert.equal(killSwitchModeOf('on'), 'rules');
    assert.equal(killSwitchModeOf('off'), 'model');
    for (const mode of ['model', 'rules', 'review', 'park'] as const) assert.equal(killSwitchModeOf(mode), mode);
    assert.equal(killSwitchModeOf('shutdown-everything'), 'rules');
    const control = new ControlState();
    control.apply(controlKey('p', KILL_SWITCH_MODEL), setting('review'));
    assert.equal(control.killSwitchMode('p'), 'review');
    assert.equal(control.killSwitchOn('p'), false, 'review keeps scoring with the model');
    control.apply(controlKey('p', KILL_SWITCH_MODEL), setting('on'));
    assert.equal(control.killSwitchOn('p'), true);
  });

  it('lists the open circuits of a process from the control state', () => {
    const control = new ControlState();
    control.apply(controlKey('p', circuitSetting('validate', 2)), setting('open', circuitSetting('validate', 2)));
    control.apply(controlKey('p', circuitSetting('validate', 0)), setting('closed', circuitSetting('validate', 0)));
    control.apply(controlKey('p', circuitSetting('decide', 1)), setting('open', circuitSetting('decide', 1)));
    assert.deepEqual(
      control.openCircuits('p', 'validate').map((c) => [c.process, c.partition]),
      [['validate', 2]],
    );
    assert.deepEqual(
      control.openCircuits('p').map((c) => [c.process, c.partition]),
      [['decide', 1], ['validate', 2]],
    );
  });

  it('in mode review sends every event to review, keeping the policy verdict in the reasons', () => {
    const policy = signupRisk.policy.load(signupRisk.policy.configSchema.parse({}));
    const scored = {
      event_id: 'e1',
      event_type: 'user_signed_up',
      pipeline: 'signup-risk',
      occurred_at: 1,
      payload: { user_id: 'u1', email_domain: 'example.com', country: 'DE', ip_country: 'DE', plan: 'free', signup_source: 'web', email_domain_age_days: 900, signups_from_ip_24h: 1 },
      score: 0.01,
      label: null,
      class_names: [],
      class_scores: [],
      model_version: 'm1',
      feature_names: [],
      feature_values: [],
      validated_at: 2,
      scored_at: 3,
    };
    const base = { pipeline: 'signup-risk', policy, reviewDecision: signupRisk.reviewDecision, killSwitchOn: false, now: () => 4 };
    const normal = decide(scored as never, base);
    const reviewed = decide(scored as never, { ...base, reviewEverything: true });
    assert.ok(normal.kind === 'emit' && reviewed.kind === 'emit');
    const before = normal.outputs[0]!.value as { decision: string; reasons: string[] };
    const after = reviewed.outputs[0]!.value as { decision: string; decided_by: string; reasons: string[] };
    assert.equal(before.decision, 'approve');
    assert.equal(after.decision, 'review');
    assert.equal(after.decided_by, 'rule');
    assert.deepEqual(after.reasons, [KILL_SWITCH_REVIEW_REASON, 'policy_approve', ...before.reasons]);
    assert.deepEqual(
      reviewed.outputs.map((o) => o.to),
      ['decided', 'review'],
    );
  });
});
