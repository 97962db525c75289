/**
 * The co-located mode: one process runs a pipeline's stages in order on each
 * chunk of raw records, in one transaction per chunk, instead of one process
 * and one transaction per stage.
 *
 * Every intermediate topic is still written (validated, scored, review, dead
 * letters) with exactly the messages the independent stages would write, so
 * the sink, monitoring and replay see the same records; what changes is that
 * a record takes one hop to its decision instead of three.
 *
 * One difference, by design: a later stage's dead letter carries the record
 * this process consumed (the raw event, its bytes and coordinates), because
 * the intermediate record it failed on has no offset yet: it is written in the
 * same transaction. `dlq.stage` still names the stage that refused it.
 */
import { type SourceRecord, type TopicSuffix, topicName } from '../../lib/contracts.ts';
import { deadLetterOutput, type StageHandler, type StageName, type StageOutput } from './stage.ts';

export interface ChainLink {
  stage: StageName;
  /** The topic suffix this stage reads: the previous link writes it. */
  input: TopicSuffix;
  handler: StageHandler;
}

/**
 * Composes stage handlers into one handler of the first link's input: per
 * input record, every message every stage wrote for it, in stage order.
 */
export function chainHandlers(pipeline: string, links: readonly ChainLink[], now: () => number): StageHandler {
  const [first, ...rest] = links;
  if (first === undefined) throw new Error('a chain needs at least one stage');
  return async (records) => {
    const outputs: StageOutput[] = (await first.handler(records)).map((output) => ({ messages: [...output.messages], note: { ...output.note } }));
    // What the previous link wrote, per origin record.
    let previous: Array<{ origin: number; output: StageOutput }> = outputs.map((output, origin) => ({ origin, output }));
    for (const link of rest) {
      const topic = topicName(pipeline, link.input);
      const inputs: SourceRecord[] = [];
      const origins: number[] = [];
      for (const { origin, output } of previous) {
        for (const message of output.messages) {
          if (message.topic !== topic) continue;
          const source = records[origin]!;
          // Coordinates of the origin: the intermediate record is not written yet.
          inputs.push({ ...source, topic, key: message.key, value: message.value, headers: {} });
          origins.push(origin);
        }
      }
      if (inputs.length === 0) break;
      const produced = await link.handler(inputs);
      previous = produced.map((output, j) => {
        const origin = origins[j]!;
        const combined = outputs[origin]!;
        const letter = output.note.deadLetter;
        const written = letter === undefined ? output : deadLetterOutput(pipeline, link.stage, records[origin]!, letter, now());
        combined.messages.push(...written.messages);
        if (letter !== undefined) combined.note.deadLetter = letter;
        combined.note.eventId ??= output.note.eventId;
        return { origin, output: written };
      });
    }
    return outputs;
  };
}
