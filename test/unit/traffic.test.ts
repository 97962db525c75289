import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { produceStreamOffThread } from '../../cli/traffic.ts';

describe('produceStreamOffThread', () => {
  it('rejects with the registry error for a pipeline it does not know, before connecting to anything', async () => {
    await assert.rejects(
      produceStreamOffThread({ brokers: ['127.0.0.1:1'], pipeline: 'no-such-pipeline', count: 1, ratePerSec: 0, badEvery: 0, idPrefix: 'x', seed: 1, maxMessageBytes: 1_000 }),
      (error: Error & { code?: string }) => error.code === 'PIPELINE_UNKNOWN' && /Unknown pipeline "no-such-pipeline"/.test(error.message),
    );
  });
});
