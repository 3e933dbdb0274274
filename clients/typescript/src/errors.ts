import type { Attempt } from "./types.js";

/**
 * Every failure of a gateway call: an HTTP error (its status), an error
 * frame that ended a stream (status 0), a network failure or a timeout
 * (status 0, type `network_error` or `timeout`), or an abort (`aborted`).
 */
export class GatewayError extends Error {
  /** The HTTP status; 0 when there was none (stream error frame, network, abort). */
  readonly status: number;
  /** The gateway's error type: `invalid_request`, `rate_limited`, `budget_exceeded`, `upstream_error`, ... */
  readonly type: string;
  /** Each provider call that failed, for upstream failures. */
  readonly attempts: Attempt[];
  /** Whole seconds to wait before trying again, when the gateway said. */
  readonly retryAfterSeconds: number | undefined;
  /** The request parameter at fault, if one is. */
  readonly param: string | undefined;

  constructor(init: { status: number; type: string; message: string; attempts?: Attempt[]; retryAfterSeconds?: number; param?: string; cause?: unknown }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "GatewayError";
    this.status = init.status;
    this.type = init.type;
    this.attempts = init.attempts ?? [];
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.param = init.param;
  }
}

interface ErrorBody {
  error?: { type?: string; message?: string; attempts?: Attempt[]; param?: string };
}

/** The error of a non-2xx response. */
export async function errorOf(response: Response): Promise<GatewayError> {
  const text = await response.text().catch(() => "");
  let body: ErrorBody = {};
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    // Not JSON (a proxy's page): its text is the message.
  }
  const retryAfter = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
  return new GatewayError({
    status: response.status,
    type: body.error?.type ?? "http_error",
    message: body.error?.message ?? (text.slice(0, 200) || `HTTP ${response.status}`),
    attempts: body.error?.attempts ?? [],
    retryAfterSeconds: Number.isFinite(retryAfter) ? retryAfter : undefined,
    param: body.error?.param,
  });
}

/** The error of a stream's error frame. */
export function frameError(error: { type?: string; message?: string; attempts?: Attempt[] }): GatewayError {
  return new GatewayError({
    status: 0,
    type: error.type ?? "upstream_error",
    message: error.message ?? "the stream ended with an error",
    attempts: error.attempts ?? [],
  });
}
