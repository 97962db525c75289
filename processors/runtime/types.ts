/** The runtime's vocabulary lives in lib/contracts.ts, below every layer; re-exported for the stages. */
export * from '../../lib/contracts.ts';
