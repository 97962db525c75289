/**
 * Every registered pipeline is a complete plugin: its contracts carry the
 * common fields every generic part reads, its model card matches its model
 * adapter, its policy loads with its defaults and decides within its own
 * decisions, its generator is deterministic and its runbook exists.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readCard } from '../../connectors/onnx/card.ts';
import { resolveModelDir } from '../../connectors/onnx/model.ts';
import { avroType } from '../../connectors/registry/registry.ts';
import { DEAD_LETTER_REASONS } from '../../lib/contracts.ts';
import { contractSchemas } from '../../lib/schemas.ts';
import { listPipelines, pipelineByName } from '../../pipelines/registry.ts';
import { parseEnvSchemas } from '../../lib/settings.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const ts = { type: 'long', logicalType: 'timestamp-millis' };
const nullable = (type: string) => ['null', type];
const array = (items: string) => ({ type: 'array', items });

/** The common fields, in order, each contract starts with (PRODUCT.md), with their Avro types. */
const COMMON: Record<string, Array<[string, unknown]>> = {
  validated: [['event_id', 'string'], ['event_type', 'string'], ['occurred_at', ts], ['source', 'string'], ['payload', null], ['dropped_fields', array('string')], ['validated_at', ts]],
  scored: [
    ['event_id', 'string'], ['event_type', 'string'], ['occurred_at', ts], ['source', 'string'], ['payload', null],
    ['score', nullable('double')], ['label', nullable('string')], ['class_names', array('string')], ['class_scores', array('double')],
    ['model_version', nullable('string')], ['feature_names', array('string')], ['feature_values', array('double')], ['validated_at', ts], ['scored_at', ts],
  ],
  decided: [
    ['event_id', 'string'], ['pipeline', 'string'], ['decision', 'string'], ['decided_by', null], ['reasons', array('string')],
    ['score', nullable('double')], ['model_version', nullable('string')], ['policy_version', 'string'], ['decision_version', 'int'], ['occurred_at', ts], ['decided_at', ts],
  ],
};
COMMON['review'] = COMMON['decided']!;

const plugins = listPipelines();

describe('pipeline registry', () => {
  it('holds both reference pipelines, and instances resolve to their kind', () => {
    assert.deepEqual(plugins.map((p) => p.kind).sort(), ['signup-risk', 'ticket-triage']);
    assert.equal(pipelineByName('ticket-triage-staging').plugin.kind, 'ticket-triage');
    assert.equal(pipelineByName('signup-risk-x1').name, 'signup-risk-x1');
    assert.throws(() => pipelineByName('fraud'), { code: 'PIPELINE_UNKNOWN' });
  });

  for (const plugin of plugins) {
    describe(plugin.kind, () => {
      it('declares event types, decisions with its review decision, owners and a runbook that exists', () => {
        assert.ok(plugin.eventTypes.length > 0);
        assert.ok(plugin.decisions.includes(plugin.reviewDecision));
        assert.ok(plugin.owners.team && plugin.owners.oncall);
        assert.ok(existsSync(join(ROOT, plugin.owners.runbook)), `runbook ${plugin.owners.runbook}`);
        assert.ok(plugin.maxMessageBytes > 0 && plugin.maxMessageBytes < 1_000_000, 'below the broker limit, so the dead letter fits');
      });

      it('has Avro contracts that avsc accepts and that start with the common fields', () => {
        const schemas = contractSchemas(plugin.schemasDir);
        for (const [topic, schema] of Object.entries(schemas)) {
          avroType(schema);
          const fields = (schema as { fields: Array<{ name: string; type: unknown }> }).fields;
          const common = COMMON[topic]!;
          assert.deepEqual(fields.slice(0, common.length).map((f) => f.name), common.map(([name]) => name), `${topic}.avsc common fields in order`);
          common.forEach(([name, type], i) => {
            if (type !== null) assert.deepEqual(fields[i]!.type, type, `${topic}.${name}`);
          });
        }
        const decidedBy = (schemas.decided as { fields: Array<{ name: string; type: { symbols?: string[] } }> }).fields[3]!.type;
        assert.deepEqual(decidedBy.symbols, ['model', 'rule', 'human', 'fallback']);
      });

      it('has an active model whose card matches the model adapter', async () => {
        const adapter = plugin.model;
        const card = await readCard(await resolveModelDir(plugin.kind), adapter.monitoredNames);
        assert.deepEqual(card.features, [...adapter.featureNames]);
        if (adapter.output.kind === 'multiclass') assert.deepEqual(card.onnx.classes, [...adapter.output.classes]);
        else assert.equal(card.onnx.positive_class_index, adapter.output.positiveIndex);
        for (const name of adapter.monitoredNames) assert.ok(card.reference.features[name], `reference distribution for ${name}`);
      });

      it('loads its policy from defaults and decides generated events within its own decisions', () => {
        const settings = parseEnvSchemas({ policy: plugin.policy.configSchema }, {});
        const policy = plugin.policy.load(settings.policy);
        assert.match(policy.version, /^policy-[0-9a-f]{12}$/);
        const samples = [...plugin.generator.events({ seed: 1, count: 50, startMs: Date.UTC(2026, 10, 1) })];
        for (const sample of samples) {
          const envelope = JSON.parse(sample.value.toString('utf8'));
          const parsed = plugin.payload(envelope.event_type, envelope.payload);
          assert.ok(parsed.ok, `generated event ${sample.eventId} is valid: ${parsed.ok ? '' : parsed.message}`);
          const features = plugin.model.features(envelope.event_type, parsed.value);
          assert.equal(features.length, plugin.model.featureNames.length);
          for (const killSwitchOn of [false, true]) {
            const verdict = policy.decide({ eventType: envelope.event_type, payload: parsed.value, score: killSwitchOn ? null : 0.5, label: null, classScores: {} }, { killSwitchOn });
            assert.ok(plugin.decisions.includes(verdict.decision), verdict.decision);
          }
        }
      });

      it('generates the same events for the same seed, and malformed samples with contract reasons', () => {
        const options = { seed: 7, count: 20, startMs: Date.UTC(2026, 10, 1), idPrefix: 'det' };
        const once = [...plugin.generator.events(options)].map((e) => e.value.toString('hex'));
        const again = [...plugin.generator.events(options)].map((e) => e.value.toString('hex'));
        assert.deepEqual(once, again);
        const bad = plugin.generator.malformed({ maxMessageBytes: plugin.maxMessageBytes });
        assert.ok(bad.length >= 5);
        for (const sample of bad) assert.ok((DEAD_LETTER_REASONS as readonly string[]).includes(sample.reason), sample.name);
      });
    });
  }
});
