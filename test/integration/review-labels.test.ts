/**
 * Reviewers' labels back to training, against the local ClickHouse: what
 * `npm run train -- --with-labels` reads (training/labels.py, the query it
 * runs over ClickHouse's HTTP interface). Each event's latest label, joined to
 * the features the score stage kept for the model version that decided it;
 * labels written twice by the sink counted once; labels without features or
 * outside the model's classes left out, and counted. Then the trainer itself
 * on a small generated set with those labels (when training/.venv exists:
 * training/setup.sh): the card records how many labels it used.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createClickHouse, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { TABLES } from '../../connectors/clickhouse/schema.ts';
import { insertTableRows } from '../../connectors/clickhouse/writer.ts';
import { FEATURE_NAMES } from '../../pipelines/signup-risk/features.ts';
import { insertLabels, type LabelRow } from '../../processors/sink/labels.ts';
import { emptyRows } from '../../processors/sink/rows.ts';
import { connections, uniqueName } from '../helpers.ts';

const python = process.env['SLUICE_PYTHON'] ?? 'python3';
const venvPython = 'training/.venv/bin/python';

describe('labels for training (npm run train -- --with-labels)', () => {
  const client = createClickHouse({ url: connections.clickhouseUrl });
  const pipeline = uniqueName('signup-risk-it-labels');
  const now = Date.now();
  const featuresOf = (n: number) => FEATURE_NAMES.map((_, i) => (n * 10 + i) / 4);

  function label(eventId: string, given: string, at: number, overrides: Partial<LabelRow> = {}): LabelRow {
    return {
      pipeline,
      event_id: eventId,
      item_id: `item-${eventId}`,
      kind: 'review',
      label: given,
      label_field_names: [],
      label_field_values: [],
      reviewer: 'alice',
      reason: 'test',
      original_decision: 'review',
      original_decided_by: 'model',
      original_decision_version: 1,
      decision_version: 2,
      score: 0.6,
      model_version: 'm1',
      policy_version: 'p1',
      occurred_at_ms: now - 60_000,
      created_at_ms: now - 50_000,
      labeled_at_ms: at,
      kafka_partition: 0,
      kafka_offset: 0,
      ...overrides,
    };
  }

  before(async () => {
    await migrate(client, { url: connections.clickhouseUrl });
    const rows = emptyRows();
    for (const [n, eventId, version] of [[1, 'e-block', 'm1'], [2, 'e-approve', 'm1'], [3, 'e-audit', 'm2'], [4, 'e-review', 'm1']] as const) {
      rows.modelOutputs.push({
        pipeline,
        event_id: eventId,
        model_version: version,
        score: 0.5,
        label: '',
        class_names: [],
        class_scores: [],
        feature_names: [...FEATURE_NAMES],
        feature_values: featuresOf(n),
        occurred_at_ms: now - 60_000,
        scored_at_ms: now - 59_000,
        kafka_partition: 0,
        kafka_offset: n,
      });
    }
    // The challenger's view of e-block: not the model that decided, so not the features used.
    rows.modelOutputs.push({ ...rows.modelOutputs[0]!, model_version: 'challenger', feature_values: featuresOf(9) });
    const labels = [
      // Approved first, then a second reviewer blocked it: the latest label stands.
      label('e-block', 'approve', now - 20_000),
      label('e-block', 'block', now - 10_000, { reviewer: 'bob' }),
      label('e-approve', 'approve', now - 10_000),
      label('e-audit', 'block', now - 10_000, { kind: 'audit', model_version: 'm2', original_decision: 'approve', original_decision_version: 1 }),
      // A label whose event has no model output (decided without a model): no features.
      label('e-unscored', 'block', now - 10_000, { model_version: '' }),
    ];
    await insertTableRows(client, rows);
    await insertLabels(client, labels);
    await insertLabels(client, labels); // the at-least-once sink's repeat
  });

  after(async () => {
    await deletePipelineRows(client, pipeline).catch(() => {});
    await client.command({ query: `ALTER TABLE ${TABLES.labels} DELETE WHERE pipeline = ${quote(pipeline)}` }).catch(() => {});
    await client.close();
  });

  it("turns each event's latest label into a training row with the features its deciding model saw, and counts what it leaves out", () => {
    const run = spawnSync(python, ['training/labels.py', '--pipeline', pipeline, '--days', '1', '--features', FEATURE_NAMES.join(','), '--url', connections.clickhouseUrl], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout) as {
      labels: number;
      used: number;
      positives: number;
      by_kind: Record<string, number>;
      skipped: Record<string, number>;
      rows: Array<{ features: number[]; label: number }>;
    };
    assert.deepEqual([out.labels, out.used, out.positives], [4, 3, 2], 'four labeled events (each once), three with features, two blocked');
    assert.deepEqual(out.by_kind, { review: 2, audit: 1 });
    assert.deepEqual(out.skipped, { no_features: 1, features_mismatch: 0, not_a_class: 0 });
    // Ordered by event id: e-approve, e-audit, e-block; features of the deciding version (m1 or m2), never the challenger's.
    assert.deepEqual(out.rows, [
      { features: featuresOf(2), label: 0 },
      { features: featuresOf(3), label: 1 },
      { features: featuresOf(1), label: 1 },
    ]);
  });

  it('trains with them: the card records the labels used, their weight and what was skipped', { skip: existsSync(venvPython) ? false : `no ${venvPython}: run bash training/setup.sh` }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-labels-'));
    try {
      const data = join(dir, 'signups.csv');
      const exported = spawnSync(process.execPath, ['training/export-data.ts', '--seed', '3', '--count', '5000', '--out', data], { encoding: 'utf8' });
      assert.equal(exported.status, 0, exported.stderr);
      const trained = spawnSync(
        venvPython,
        ['training/train.py', '--data', data, '--models-dir', dir, '--version', 'labels-test', '--with-labels', '--labels-pipeline', pipeline, '--labels-days', '1', '--clickhouse-url', connections.clickhouseUrl],
        { encoding: 'utf8' },
      );
      assert.equal(trained.status, 0, trained.stderr);
      assert.deepEqual(readdirSync(join(dir, 'signup-risk')), ['labels-test']);
      const card = JSON.parse(readFileSync(join(dir, 'signup-risk', 'labels-test', 'card.json'), 'utf8')) as { data: { training: { rows: number }; labels: Record<string, unknown> } };
      assert.deepEqual(
        [card.data.labels['used'], card.data.labels['positives'], card.data.labels['weight'], card.data.labels['skipped']],
        [3, 2, 5, { no_features: 1, features_mismatch: 0, not_a_class: 0 }],
      );
      assert.equal(card.data.training.rows, 4_000, 'the generated training rows are counted apart from the labels');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says what to do when ClickHouse cannot be reached', () => {
    const run = spawnSync(python, ['training/labels.py', '--pipeline', pipeline, '--features', FEATURE_NAMES.join(','), '--url', 'http://127.0.0.1:9'], { encoding: 'utf8' });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /Cannot reach ClickHouse at http:\/\/127\.0\.0\.1:9 .*sluice stack up/);
  });
});
