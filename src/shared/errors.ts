/**
 * The base of Tandem's own errors. Its `name` is the class's, so a log line or a caught error says which one it is;
 * boundaries translate them by class (the HTTP API's `toApiError`, the CLI's exit codes), never by message text.
 */
export class TandemError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}
