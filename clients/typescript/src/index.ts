export { GatewayLLMClient } from "./client.js";
export type { GatewayClientOptions } from "./client.js";
export { GatewayError } from "./errors.js";
export { sseEvents } from "./sse.js";
export type { SseEvent } from "./sse.js";
export type * from "./types.js";
