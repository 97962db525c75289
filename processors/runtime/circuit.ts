/**
 * A stage's circuit breaker, per input partition. When an upstream deploy
 * breaks every event, dead-lettering a million records is worse than waiting:
 * once more than `threshold` of a partition's last `window` records were
 * dead-lettered (judged from `minRecords` on), the partition opens: the stage
 * stops consuming it and its records wait in Kafka. It closes on
 * `sluice circuit reset`, or after `coolDownMs` with a probe: the partition is
 * consumed again and its next committed transaction is judged alone: over the
 * threshold opens it again, anything else closes it.
 *
 * Pure bookkeeping: the runtime (runtime.ts) feeds it committed outcomes and
 * the control topic's view, and does the pausing and the writing.
 */

export interface CircuitSettings {
  /** Opens when dead letters are more than this share of the window (0 < threshold ≤ 1; 1 never opens). */
  threshold: number;
  /** The records judged: the last this many of the partition. */
  window: number;
  /** No verdict before the window holds this many records. */
  minRecords: number;
  /** After this long open, a probe transaction is let through. */
  coolDownMs: number;
}

export const CIRCUIT_DEFAULTS: CircuitSettings = { threshold: 0.5, window: 1_000, minRecords: 100, coolDownMs: 300_000 };

/** A ring of the last `size` outcomes (true: dead-lettered) and how many of them are dead letters. */
class OutcomeWindow {
  private readonly flags: Uint8Array;
  private next = 0;
  private filled = 0;
  private dead = 0;

  constructor(size: number) {
    this.flags = new Uint8Array(size);
  }

  add(deadLettered: boolean): void {
    if (this.filled === this.flags.length) this.dead -= this.flags[this.next]!;
    else this.filled++;
    const flag = deadLettered ? 1 : 0;
    this.flags[this.next] = flag;
    this.dead += flag;
    if (++this.next === this.flags.length) this.next = 0;
  }

  get records(): number {
    return this.filled;
  }

  get deadLetters(): number {
    return this.dead;
  }
}

export type CircuitState = 'closed' | 'open' | 'probing';

/** Why a partition opened: for the log line, the control record and the alert. */
export interface Trip {
  partition: number;
  deadLetters: number;
  records: number;
  /** True when the trip ended a probe (the cool-down's test transaction failed again). */
  probe: boolean;
}

interface PartitionCircuit {
  state: CircuitState;
  window: OutcomeWindow;
  /** When it opened (ms), for the cool-down. */
  openedAt: number;
}

export class CircuitBreaker {
  private readonly partitions = new Map<number, PartitionCircuit>();
  private readonly settings: CircuitSettings;

  constructor(settings: CircuitSettings) {
    this.settings = settings;
  }

  private circuit(partition: number): PartitionCircuit {
    let circuit = this.partitions.get(partition);
    if (circuit === undefined) {
      circuit = { state: 'closed', window: new OutcomeWindow(this.settings.window), openedAt: 0 };
      this.partitions.set(partition, circuit);
    }
    return circuit;
  }

  state(partition: number): CircuitState {
    return this.partitions.get(partition)?.state ?? 'closed';
  }

  /** Partitions this breaker holds open (not probing). */
  open(): number[] {
    return [...this.partitions].filter(([, c]) => c.state === 'open').map(([p]) => p);
  }

  /**
   * One committed transaction's outcomes on a partition (true: dead-lettered).
   * Returns the trip when it opens the partition, `closed` when it ends a
   * probe that passed, and null otherwise.
   */
  committed(partition: number, deadLettered: readonly boolean[]): Trip | 'closed' | null {
    const circuit = this.circuit(partition);
    if (circuit.state === 'open') return null; // a transaction that was in flight when it opened
    if (circuit.state === 'probing') {
      const dead = deadLettered.filter(Boolean).length;
      if (deadLettered.length === 0) return null;
      if (dead > this.settings.threshold * deadLettered.length) {
        circuit.state = 'open';
        return { partition, deadLetters: dead, records: deadLettered.length, probe: true };
      }
      this.close(partition);
      return 'closed';
    }
    for (const flag of deadLettered) circuit.window.add(flag);
    const { records, deadLetters } = circuit.window;
    if (records >= this.settings.minRecords && deadLetters > this.settings.threshold * records) {
      circuit.state = 'open';
      return { partition, deadLetters, records, probe: false };
    }
    return null;
  }

  /** Marks a partition open (tripped here, or read from the control topic); the cool-down counts from `at`. */
  markOpen(partition: number, at: number): void {
    const circuit = this.circuit(partition);
    if (circuit.state !== 'probing') circuit.state = 'open';
    circuit.openedAt = at;
  }

  /** Closes a partition (reset, or a probe that passed) with an empty window: the records before do not count again. */
  close(partition: number): void {
    this.partitions.set(partition, { state: 'closed', window: new OutcomeWindow(this.settings.window), openedAt: 0 });
  }

  /** Open partitions whose cool-down is over, now probing: the caller lets them be consumed again. */
  coolDown(now: number, owned: (partition: number) => boolean): number[] {
    const probing: number[] = [];
    for (const [partition, circuit] of this.partitions) {
      if (circuit.state !== 'open' || now - circuit.openedAt < this.settings.coolDownMs || !owned(partition)) continue;
      circuit.state = 'probing';
      probing.push(partition);
    }
    return probing;
  }
}
