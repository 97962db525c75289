/**
 * A refusal of one of sluice's HTTP services (the ingest gateway, the review
 * service): a code from the service's catalog, the HTTP status the catalog
 * gives it, and a message that says what to do. Answered as
 * `{"error":{"code","message"}}`; clients match on `code`.
 */
export class HttpServiceError<Code extends string> extends Error {
  readonly code: Code;
  readonly status: number;

  constructor(name: string, code: Code, status: number, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = name;
    this.code = code;
    this.status = status;
  }

  /** The response body. */
  body(): { error: { code: Code; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}
