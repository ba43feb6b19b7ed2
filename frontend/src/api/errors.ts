/** An error from a Go service call, whatever the transport. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    /** "Service.Method" that failed, when known. */
    readonly call?: string,
    /** HTTP status for the web transport; undefined for Wails. */
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The web transport got 401: the access PIN is needed. */
export class AuthRequiredError extends ApiError {
  override name = 'AuthRequiredError';
  constructor(call?: string) {
    super('access PIN required', call, 401);
  }
}

/**
 * toError turns whatever a transport rejected with into an Error. Wails
 * rejects with a plain string; fetch with a TypeError; anything else is
 * described as well as it can be.
 */
export function toError(reason: unknown, call?: string): Error {
  if (reason instanceof Error) return reason;
  if (typeof reason === 'string') return new ApiError(reason || 'unknown error', call);
  if (reason && typeof reason === 'object' && 'error' in reason) {
    const msg = (reason as { error: unknown }).error;
    if (typeof msg === 'string' && msg) return new ApiError(msg, call);
  }
  let text: string;
  try {
    text = JSON.stringify(reason) ?? String(reason);
  } catch {
    text = String(reason);
  }
  return new ApiError(text, call);
}

/**
 * isMissingMethod: the Go side has no such service or method (an older or
 * newer build). Web: 404 "call X.Y: no such method"; Wails: "X.Y is not bound".
 */
export function isMissingMethod(err: unknown): boolean {
  if (err instanceof ApiError && err.status === 404) return true;
  const msg = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  return /no such method|is not bound|unknown method/i.test(msg);
}
