// Retries with exponential backoff and full jitter, within a budget of attempts.

/** How hard a transfer tries before giving up (see RETRY_DEFAULTS). */
export interface RetryPolicy {
  /** Failed attempts in a row (without new bytes) before the error is final. */
  attempts: number;
  /** First backoff ceiling in ms; doubles per failed attempt (the wait is uniform in [0, ceiling]: "full jitter"). */
  baseDelayMs: number;
  /** Largest backoff ceiling in ms. */
  maxDelayMs: number;
  /** A request that sends no byte for this long (headers or body) is aborted and retried. */
  idleTimeoutMs: number;
}

/** Defaults for every remote read and write. */
export const RETRY_DEFAULTS: RetryPolicy = { attempts: 6, baseDelayMs: 200, maxDelayMs: 8000, idleTimeoutMs: 30_000 };

/**
 * A failed request. `retryable`: a network error, a timeout, HTTP 408/429/5xx or a body that did not match (worth
 * another try); false for answers that will not change (403, 404, ...).
 */
export class TransferError extends Error {
  /** Attempts made when this error ended the transfer (set by withRetries / downloadFile). */
  attempts = 1;
  constructor(message: string, readonly url: string, readonly status: number | undefined, readonly retryable: boolean) {
    super(message);
  }
}

/** Whether an HTTP status is worth retrying. */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** The wait before retry number `failures` (1 = first retry): uniform in [0, min(max, base * 2^(failures-1))]. */
export function backoffMs(policy: RetryPolicy, failures: number, random = Math.random): number {
  return random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, failures - 1));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Run `fn` until it succeeds, retrying a retryable TransferError after a jittered backoff; `fn` gets the number of
 * failures so far. Throws the last error once `policy.attempts` attempts failed (or at once for a non-retryable one).
 */
export async function withRetries<T>(policy: RetryPolicy, fn: (failures: number) => Promise<T>): Promise<T> {
  for (let failures = 0; ; ) {
    try {
      return await fn(failures);
    } catch (e) {
      if (!(e instanceof TransferError)) throw e;
      failures++;
      e.attempts = failures;
      if (!e.retryable || failures >= policy.attempts) throw e;
      await sleep(backoffMs(policy, failures));
    }
  }
}
