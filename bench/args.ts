/** Reading the benchmarks' command-line flags. */

/** The value of `--<flag>` as a whole number of at least 1; otherwise an error naming the flag and what it got. */
export function positiveInteger(flag: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${flag} must be a positive integer, got ${text}`);
  return value;
}
