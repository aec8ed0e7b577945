/**
 * Failure `type` strings carried by `ApplicationFailure`s. Workflow code, activities and clients match on these,
 * never on message text.
 */
export const Failure = {
  /** 429 from the model API; retryable after the wait it asks for (`retry-after-ms`, `retry-after`). */
  ModelRateLimit: 'Model.RateLimit',
  /** 529 or an `overloaded_error`; retryable. */
  ModelOverloaded: 'Model.Overloaded',
  /** 5xx other than 529; retryable. */
  ModelServerError: 'Model.ServerError',
  /** 408 or a client-side timeout; retryable. */
  ModelTimeout: 'Model.Timeout',
  /** 409; retryable. */
  ModelConflict: 'Model.Conflict',
  /** The connection failed or the stream was cut; retryable. */
  ModelConnection: 'Model.Connection',
  /** The reply could not be read (for example a tool input that is not valid JSON); retryable: a new sample. */
  ModelInvalidResponse: 'Model.InvalidResponse',
  /** 400; not retryable. */
  ModelBadRequest: 'Model.BadRequest',
  /** 400 because the prompt is longer than the model's window; not retryable. */
  ModelPromptTooLong: 'Model.PromptTooLong',
  /** 401; not retryable. */
  ModelAuthentication: 'Model.Authentication',
  /** 403; not retryable. */
  ModelPermissionDenied: 'Model.PermissionDenied',
  /** 404 (unknown model); not retryable. */
  ModelNotFound: 'Model.NotFound',
  /** 413; not retryable. */
  ModelRequestTooLarge: 'Model.RequestTooLarge',
  /** The container is missing, exited or OOM-killed; retryable, the next attempt gets a fresh container. */
  SandboxLost: 'Sandbox.Lost',
  /** The container could not be created (image missing, engine refused); retryable. */
  SandboxProvisionFailed: 'Sandbox.ProvisionFailed',
  /** A repository resource could not be cloned or checked out; retryable (the next attempt starts afresh). */
  SandboxResourceFailed: 'Sandbox.ResourceFailed',
  /** A sandbox task reached a hands host other than the one its sandbox was placed on; not retryable. */
  HandsWrongHost: 'Hands.WrongHost',
  /** A placement was asked of a worker that runs no hands host; not retryable. */
  HandsUnavailable: 'Hands.Unavailable',
  /** A snapshot was asked of a hands host with no snapshot store; not retryable. */
  SnapshotUnavailable: 'Snapshot.Unavailable',
  /** The session reached its cost, token or per-turn call ceiling; not retryable (raise the budget to go on). */
  BudgetReached: 'Budget.Reached',
  /** The session log could not be read or holds something the harness cannot use; not retryable. */
  LogInvalid: 'Log.Invalid',
  /** The session refers to a secret the worker's vault does not hold; not retryable (set it, then `wake`). */
  VaultSecretMissing: 'Vault.SecretMissing',
  /** An MCP server could not be reached or started, or the connection broke; retryable. */
  McpConnectionFailed: 'Mcp.ConnectionFailed',
  /** An MCP server refused the credentials (HTTP 401/403); not retryable. */
  McpAuthenticationFailed: 'Mcp.AuthenticationFailed',
  /** A server an API client named resolves to a loopback, private or link-local address; not retryable. */
  McpAddressRefused: 'Mcp.AddressRefused',
  /** An MCP request got no answer in time; retryable. */
  McpTimeout: 'Mcp.Timeout',
} as const;
