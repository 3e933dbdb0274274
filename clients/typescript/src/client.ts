import { GatewayError, errorOf, frameError } from "./errors.js";
import { sseEvents } from "./sse.js";
import type { ChatOptions, ChatReply, FinishReason, Message, ProvidersReport, StreamChunk, ToolCall, Usage, UsageReport } from "./types.js";

/** How to reach the gateway. */
export interface GatewayClientOptions {
  /** Where the gateway listens, e.g. `http://localhost:8080`. */
  baseUrl: string;
  /** The gateway's token (`GATEWAY_AUTH_TOKEN`), sent as `Authorization: Bearer`. */
  token?: string;
  /** The longest a whole answer, or a stream's start, may take (default 60000 ms). */
  timeoutMs?: number;
  /** Tries after a 429 or 503, each after its `Retry-After` (default 2). */
  retries?: number;
  /** The `fetch` to use (default: the platform's). */
  fetch?: typeof fetch;
}

/**
 * The gateway's seed API: `/v1/chat`, `/v1/chat/stream`, `/v1/providers`,
 * `/v1/usage`, `/healthz`. No LLM logic of its own: the gateway picks the
 * provider, fails over, enforces budgets and prices each call.
 */
export class GatewayLLMClient {
  private readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly fetch: typeof fetch;

  constructor(options: GatewayClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.retries = options.retries ?? 2;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** A whole answer. */
  async chat(agentId: string, messages: Message[], options: ChatOptions = {}): Promise<ChatReply> {
    const signal = this.deadline(options.signal);
    const response = await this.post("/v1/chat", body(agentId, messages, options), signal);
    const answer = (await response.json()) as WireReply;
    return {
      content: answer.content,
      toolCalls: (answer.tool_calls ?? []).map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })),
      finishReason: answer.finish_reason,
      model: answer.model,
      provider: answer.provider,
      usage: answer.usage,
      costUsd: answer.cost_usd,
    };
  }

  /**
   * A streamed answer: text deltas and tool-call deltas as they come, then a
   * `done` chunk with usage and cost. A stream that ends with an error frame,
   * or without its end, throws from the iterator; leaving the loop early
   * cancels the request (the gateway then charges what was sent).
   */
  async *stream(agentId: string, messages: Message[], options: ChatOptions = {}): AsyncGenerator<StreamChunk> {
    // The timeout bounds the stream's start; once it flows, the gateway's own stall timeout watches it.
    const started = new AbortController();
    const timer = setTimeout(() => started.abort(timeoutError(this.timeoutMs)), this.timeoutMs);
    const signal = options.signal ? either(options.signal, started.signal) : started.signal;
    let response: Response;
    try {
      response = await this.post("/v1/chat/stream", body(agentId, messages, options), signal);
    } finally {
      clearTimeout(timer);
    }
    if (!response.body) throw new GatewayError({ status: response.status, type: "protocol_error", message: "the stream has no body" });
    let ended = false;
    try {
      for await (const event of sseEvents(response.body)) {
        const chunk = chunkOf(JSON.parse(event.data) as WireFrame);
        if (chunk.type === "done") ended = true;
        yield chunk;
        if (ended) return;
      }
    } catch (error) {
      throw asGatewayError(error, signal);
    }
    if (!ended) throw new GatewayError({ status: 0, type: "upstream_error", message: "the stream ended without its done frame" });
  }

  /** `GET /v1/providers`: each provider's role, model, calls, circuit and latency. */
  async providers(): Promise<ProvidersReport> {
    return (await this.get("/v1/providers")).json() as Promise<ProvidersReport>;
  }

  /** `GET /v1/usage`: spend, limits and what is left, today and this month. */
  async usage(): Promise<UsageReport> {
    return (await this.get("/v1/usage")).json() as Promise<UsageReport>;
  }

  /** `GET /healthz`. */
  async health(): Promise<{ status: string }> {
    return (await this.get("/healthz")).json() as Promise<{ status: string }>;
  }

  private get(path: string): Promise<Response> {
    return this.send(path, { method: "GET" }, this.deadline(undefined));
  }

  private post(path: string, payload: unknown, signal: AbortSignal): Promise<Response> {
    return this.send(path, { method: "POST", body: JSON.stringify(payload) }, signal);
  }

  /** Sends, retrying 429 and 503 after their `Retry-After` up to `retries` times. */
  private async send(path: string, init: { method: string; body?: string }, signal: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json, text/event-stream" };
    if (init.body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetch(`${this.baseUrl}${path}`, { ...init, headers, signal });
      } catch (error) {
        throw asGatewayError(error, signal);
      }
      if (response.ok) return response;
      const error = await errorOf(response);
      if (!(error.status === 429 || error.status === 503) || attempt >= this.retries) throw error;
      await wait((error.retryAfterSeconds ?? 1) * 1000, signal);
    }
  }

  private deadline(signal: AbortSignal | undefined): AbortSignal {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    return signal ? either(signal, timeout) : timeout;
  }
}

interface WireReply {
  content: string;
  tool_calls?: ToolCall[];
  finish_reason: FinishReason;
  model: string;
  provider: string;
  usage: Usage;
  cost_usd: number;
}

interface WireFrame {
  content?: string;
  tool_call?: { index: number; id?: string; name?: string; arguments: string };
  done?: boolean;
  finish_reason?: FinishReason;
  error?: { type?: string; message?: string };
  model?: string;
  provider?: string;
  usage?: Usage;
  cost_usd?: number;
}

function chunkOf(frame: WireFrame): StreamChunk {
  const model = frame.model ?? "";
  const provider = frame.provider ?? "";
  if (frame.error) throw frameError(frame.error);
  if (frame.done) {
    return { type: "done", finishReason: frame.finish_reason ?? "stop", model, provider, usage: frame.usage as Usage, costUsd: frame.cost_usd ?? 0 };
  }
  if (frame.tool_call) return { type: "tool_call", ...frame.tool_call, model, provider };
  return { type: "text", text: frame.content ?? "", model, provider };
}

/** The seed API's request body. */
function body(agentId: string, messages: Message[], o: ChatOptions): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    agent_id: agentId,
    messages,
    model: o.model,
    temperature: o.temperature,
    top_p: o.topP,
    max_tokens: o.maxTokens,
    stop: o.stop,
    seed: o.seed,
    tools: o.tools,
    tool_choice: o.toolChoice,
    parallel_tool_calls: o.parallelToolCalls,
    response_format: o.responseFormat,
    reasoning_effort: o.reasoningEffort,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

/** Aborts when either does, with its reason (`AbortSignal.any` is not in Node.js 18). */
function either(a: AbortSignal, b: AbortSignal): AbortSignal {
  const both = new AbortController();
  for (const signal of [a, b]) {
    if (signal.aborted) {
      both.abort(signal.reason);
      return both.signal;
    }
    signal.addEventListener("abort", () => both.abort(signal.reason), { once: true });
  }
  return both.signal;
}

function timeoutError(ms: number): GatewayError {
  return new GatewayError({ status: 0, type: "timeout", message: `the gateway did not answer within ${ms} ms` });
}

/** A thrown value as a GatewayError: kept if it is one, else a network failure, a timeout or an abort. */
function asGatewayError(error: unknown, signal: AbortSignal): GatewayError {
  if (error instanceof GatewayError) return error;
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof GatewayError) return reason;
    const timedOut = reason instanceof DOMException && reason.name === "TimeoutError";
    return new GatewayError({ status: 0, type: timedOut ? "timeout" : "aborted", message: timedOut ? "the gateway did not answer in time" : "the call was aborted", cause: error });
  }
  return new GatewayError({ status: 0, type: "network_error", message: `could not reach the gateway: ${String(error)}`, cause: error });
}

function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(asGatewayError(signal.reason, signal));
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(asGatewayError(signal.reason, signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
