/** A backend that cannot start for this model (the message says why); the registry falls back to ref. */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
}
