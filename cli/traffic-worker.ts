/**
 * The worker thread behind `produceStreamOffThread`: resolves the pipeline's
 * generator by name (functions cannot cross threads) and streams its events,
 * reporting progress and the result to the thread that started it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pipelineByName } from '../pipelines/registry.ts';
import { type OffThreadMessage, produceStream, type StreamOptions } from './traffic.ts';

const port = parentPort!;
const post = (message: OffThreadMessage) => port.postMessage(message);
const options = workerData as Omit<StreamOptions, 'generator' | 'onProgress'>;
const result = await produceStream({ ...options, generator: pipelineByName(options.pipeline).plugin.generator, onProgress: (produced) => post({ produced }) });
post({ result });
