/**
 * lag_growth from Kafka's admin API: a pipeline instance whose decide stage is
 * not running while records keep arriving on its input topic `<p>.scored`.
 * Its consumer group's lag grows window after window; the running monitor
 * flags lag_growth on `decide` (and not on the stages whose input is empty)
 * and opens an alert for it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClickHouse, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { TABLES } from '../../connectors/clickhouse/schema.ts';
import { deleteTopics, ensureTopics, openProducer } from '../../connectors/kafka/admin.ts';
import type { Alert } from '../../monitor/alerts.ts';
import { connections, freePort, type SluiceRun, sluiceAsync, sluiceSync, uniqueName, waitFor } from '../helpers.ts';

const name = uniqueName('signup-risk-monlag');
const topics = ['raw', 'validated', 'scored'].map((suffix) => `${name}.${suffix}`);
const client = createClickHouse({ url: connections.clickhouseUrl });

describe('sluice monitor: lag_growth', { timeout: 120_000 }, () => {
  let run: SluiceRun | undefined;
  let producer: Awaited<ReturnType<typeof openProducer>>;

  before(async () => {
    await migrate(client, { url: connections.clickhouseUrl });
    await ensureTopics(connections.kafkaBrokers, topics.map((topic) => ({ topic, partitions: 1, replicationFactor: 1, config: {} })));
    producer = await openProducer(connections.kafkaBrokers, `${name}.test`);
  });

  after(async () => {
    run?.kill('SIGKILL');
    await producer?.close().catch(() => {});
    await deleteTopics(connections.kafkaBrokers, topics).catch(() => {});
    for (const table of [TABLES.monitorWindows, TABLES.alerts]) await client.command({ query: `ALTER TABLE ${table} DELETE WHERE pipeline = ${quote(name)}` }).catch(() => {});
    await client.close();
  });

  it('flags the stage whose input keeps growing unread, and alerts its owners', async () => {
    const port = await freePort();
    run = sluiceAsync(['monitor', '--pipeline', name, '--window', '2s', '--grace', '0s', '--metrics-port', String(port)]);
    const decideStatus = /sluice_monitor_status\{[^}]*check="lag_growth",subject="decide"[^}]*\} (-?\d+)/;
    let lastWindowEnd = 0;
    let sent = 0;
    // After each judged window, fifty more records arrive for the decide stage that nobody runs
    // (three windows of it exceed the growth of 100 records lag_growth asks for).
    await waitFor(
      'lag_growth on decide',
      async () => {
        const response = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
        const text = response?.ok ? await response.text() : '';
        const end = Number(/sluice_monitor_window_end_timestamp_seconds\{[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
        if (end > lastWindowEnd) {
          lastWindowEnd = end;
          await producer.send(`${name}.scored`, Array.from({ length: 50 }, (_, i) => ({ key: `k${sent + i}`, value: `{"n":${sent + i}}` })));
          sent += 50;
        }
        return decideStatus.exec(text)?.[1] === '1' && text;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    ).then((text) => {
      for (const stage of ['validate', 'score']) {
        assert.match(text, new RegExp(`sluice_monitor_status\\{[^}]*check="lag_growth",subject="${stage}"[^}]*\\} 0`), `${stage}: its input is empty, its lag has not grown`);
      }
      assert.match(text, new RegExp(`sluice_monitor_value\\{[^}]*check="lag_growth",subject="decide"[^}]*\\} ${sent - 50}`), 'the value is the lag: every record sent before the window was judged');
    });

    const alerts = await waitFor('the lag_growth alert', () => {
      const list = sluiceSync(['alerts', 'list', '--pipeline', name, '--status', 'firing', '--json']);
      const found = list.status === 0 ? (JSON.parse(list.stdout) as Alert[]) : [];
      return found.length > 0 && found;
    });
    assert.deepEqual(alerts.map((a) => [a.kind, a.subject, a.severity]), [['lag_growth', 'decide', 'critical']]);
    run.kill('SIGTERM');
    assert.equal((await run.exited).status, 0);
  });
});
