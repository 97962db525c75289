/**
 * The local stack keeps its schemas across a restart of the registry, as Kafka
 * keeps its records: every schema id framed into a record on a topic must
 * resolve, to the same schema, after the registry process is restarted (an
 * in-memory registry would hand the ids out again from 1, and an old record
 * would decode with another schema).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { registerPipelineSchemas } from '../../cli/pipeline.ts';
import { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { connections, sluiceSync, uniqueName, waitFor } from '../helpers.ts';

const registryPid = () => Number(readFileSync(join(stackPaths().run, 'registry.pid'), 'utf8'));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it('resolves every registered schema id to the same schema after the registry restarts', async () => {
  const pipeline = `signup-risk-${uniqueName('restart')}`;
  const registered = await registerPipelineSchemas(pipeline, connections.schemaRegistryUrl);
  const before = new SchemaCatalog(connections.schemaRegistryUrl);
  const schemas = new Map<number, string>();
  for (const { subject, id } of registered) schemas.set(id, JSON.stringify((await before.latest(subject)).type.schema()));

  const pid = registryPid();
  process.kill(pid, 'SIGTERM');
  await waitFor('the registry to stop', () => !alive(pid), { timeoutMs: 60_000, intervalMs: 200 });
  const up = sluiceSync(['stack', 'up']);
  assert.equal(up.status, 0, up.stderr);
  assert.notEqual(registryPid(), pid, 'a new registry process');

  const after = new SchemaCatalog(connections.schemaRegistryUrl);
  for (const { subject, id } of registered) {
    const latest = await after.latest(subject);
    assert.equal(latest.id, id, `${subject} keeps its id`);
    assert.equal(JSON.stringify(latest.type.schema()), schemas.get(id), `${subject} keeps its schema`);
  }
});
