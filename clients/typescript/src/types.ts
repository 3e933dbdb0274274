/** Who wrote a message. */
export type Role = "system" | "developer" | "user" | "assistant" | "tool";

/** A part of a user message: text, or an image by URL (https or a base64 data URL). */
export type ContentPart = { type: "text"; text: string } | { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } };

/** A tool call the model made: its arguments are a JSON object, as text. */
export interface ToolCall {
  id: string;
  type?: "function";
  function: { name: string; arguments: string };
}

/** One message of a conversation, in OpenAI's Chat Completions shape. */
export interface Message {
  role: Role;
  content: string | ContentPart[] | null;
  name?: string;
  /** The tools an assistant turn called. */
  tool_calls?: ToolCall[];
  /** The call a `tool` message answers. */
  tool_call_id?: string;
}

/** A function the model may call. */
export interface Tool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

/** Whether, and which, tool the model must call. */
export type ToolChoice = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

/** What a call may set besides the messages. */
export interface ChatOptions {
  model?: string;
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop?: string[];
  seed?: number;
  tools?: Tool[];
  toolChoice?: ToolChoice;
  parallelToolCalls?: boolean;
  responseFormat?: { type: "text" } | { type: "json_object" } | { type: "json_schema"; json_schema: { name: string; schema?: Record<string, unknown>; strict?: boolean; description?: string } };
  reasoningEffort?: "minimal" | "low" | "medium" | "high";
  /** Cancels the call (and, mid-stream, the stream; the gateway then charges what was sent). */
  signal?: AbortSignal;
}

/** Tokens a call used. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number; cache_write_tokens?: number };
  completion_tokens_details?: { reasoning_tokens?: number };
}

/** Why the model stopped. */
export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter" | (string & {});

/** A tool call of a whole answer. */
export interface AnsweredToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** `POST /v1/chat`: a whole answer. */
export interface ChatReply {
  content: string;
  toolCalls: AnsweredToolCall[];
  finishReason: FinishReason;
  model: string;
  provider: string;
  usage: Usage;
  costUsd: number;
}

/** One piece of `POST /v1/chat/stream`. */
export type StreamChunk =
  | { type: "text"; text: string; model: string; provider: string }
  | { type: "tool_call"; index: number; id?: string; name?: string; arguments: string; model: string; provider: string }
  | { type: "done"; finishReason: FinishReason; model: string; provider: string; usage: Usage; costUsd: number };

/** One provider call that failed, as `error.attempts` lists it. */
export interface Attempt {
  provider: string;
  error: string;
  status?: number;
  message: string;
}

/** `GET /v1/providers`. */
export interface ProvidersReport {
  providers: Array<{
    name: string;
    role: "primary" | "fallback";
    model: string;
    calls: number;
    failures: number;
    failovers_from: number;
    failovers_to: number;
    circuit: "closed" | "open" | "half_open";
    circuit_retry_at: string | null;
    latency_ms: { p50: number | null; p99: number | null };
    deadlines_ms?: { connect: number; first_token: number; stall: number };
    retries?: { max: number; made: number };
  }>;
}

/** One budget window of `GET /v1/usage` (the UTC day or month). */
export interface UsageWindow {
  /** When the window began (RFC 3339). */
  start: string;
  limit_usd: number;
  spent_usd: number;
  /** Held by calls in flight. */
  reserved_usd: number;
  remaining_usd: number;
  by_agent: Record<string, number>;
  by_model: Record<string, number>;
}

/** `GET /v1/usage`. */
export interface UsageReport {
  day: UsageWindow;
  month: UsageWindow;
}
