// The client against the real gateway binary: the mock provider, or a fake
// OpenAI upstream where a test needs a stream it can pace or cut.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { GatewayError, GatewayLLMClient, type StreamChunk, type Tool } from "../src/index.js";
import { chunk, fakeOpenAI, startGateway, type RunningGateway } from "./gateway.js";

const running: RunningGateway[] = [];
after(() => running.forEach((g) => g.stop()));

async function gateway(env: Record<string, string> = {}): Promise<RunningGateway> {
  const started = await startGateway(env);
  running.push(started);
  return started;
}

const hello = [{ role: "user" as const, content: "Hello" }];

async function collect(stream: AsyncIterable<StreamChunk>): Promise<StreamChunk[]> {
  const chunks: StreamChunk[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

async function rejection(promise: Promise<unknown>): Promise<GatewayError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GatewayError, `a GatewayError, not ${String(error)}`);
    return error;
  }
  assert.fail("expected the call to fail");
}

test("chat and stream give the same answer; the stream ends with usage and cost", async () => {
  const { url } = await gateway();
  const client = new GatewayLLMClient({ baseUrl: url });
  const reply = await client.chat("ts-agent", hello);
  assert.equal(reply.content, "Hello from the mock provider! You said: Hello");
  assert.equal(reply.provider, "mock");
  assert.equal(reply.finishReason, "stop");
  assert.ok(reply.usage.total_tokens > 0);
  const chunks = await collect(client.stream("ts-agent", hello));
  const text = chunks.map((c) => (c.type === "text" ? c.text : "")).join("");
  assert.equal(text, reply.content);
  const done = chunks.at(-1);
  assert.equal(done?.type, "done");
  if (done?.type === "done") {
    assert.deepEqual(done.usage, reply.usage);
    assert.equal(done.costUsd, 0, "the mock model is free");
  }
  assert.deepEqual(await client.health(), { status: "ok" });
  const providers = await client.providers();
  assert.equal(providers.providers[0]?.name, "mock");
  const usage = await client.usage();
  assert.equal(typeof usage.day.spent_usd, "number");
});

test("a tool call, whole and streamed in pieces", async () => {
  const { url } = await gateway();
  const client = new GatewayLLMClient({ baseUrl: url });
  const weather: Tool = {
    type: "function",
    function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
  };
  const reply = await client.chat("ts-agent", [{ role: "user", content: "Weather in Paris?" }], { tools: [weather] });
  assert.equal(reply.finishReason, "tool_calls");
  assert.equal(reply.toolCalls[0]?.name, "get_weather");
  const args = JSON.parse(reply.toolCalls[0]!.arguments) as Record<string, unknown>;
  assert.ok("city" in args);
  const chunks = await collect(client.stream("ts-agent", [{ role: "user", content: "Weather in Paris?" }], { tools: [weather] }));
  const pieces = chunks.filter((c) => c.type === "tool_call");
  assert.ok(pieces.length > 1, "the call arrives in pieces");
  const first = pieces[0];
  assert.equal(first?.type === "tool_call" ? first.name : undefined, "get_weather");
  const streamed = pieces.map((c) => (c.type === "tool_call" ? c.arguments : "")).join("");
  assert.deepEqual(JSON.parse(streamed), args);
});

test("each error is a GatewayError with its status, type, attempts and wait", async () => {
  const open = await gateway({ GATEWAY_RATE_RPS: "0.01", GATEWAY_RATE_BURST: "1" });
  const client = new GatewayLLMClient({ baseUrl: open.url, retries: 0 });
  const invalid = await rejection(client.chat("", hello));
  assert.equal(invalid.status, 400);
  assert.equal(invalid.type, "invalid_request");
  const failed = await rejection(client.chat("ts-agent", hello, { model: "mock-fail" }));
  assert.equal(failed.status, 502);
  assert.equal(failed.type, "upstream_error");
  assert.equal(failed.attempts[0]?.provider, "mock");
  assert.equal(failed.attempts[0]?.status, 503);
  const limited = await rejection(client.chat("ts-agent", hello));
  assert.equal(limited.status, 429);
  assert.equal(limited.type, "rate_limited");
  assert.ok((limited.retryAfterSeconds ?? 0) >= 1);

  const locked = await gateway({ GATEWAY_AUTH_TOKEN: "ts-secret-token" });
  const unauthorized = await rejection(new GatewayLLMClient({ baseUrl: locked.url }).chat("ts-agent", hello));
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.type, "unauthorized");
  const authorized = new GatewayLLMClient({ baseUrl: locked.url, token: "ts-secret-token" });
  assert.equal((await authorized.chat("ts-agent", hello)).provider, "mock");

  const poor = await gateway({ LLM_DAILY_BUDGET_USD: "0.0000001" });
  const broke = await rejection(new GatewayLLMClient({ baseUrl: poor.url }).chat("ts-agent", hello, { model: "gpt-4o-mini" }));
  assert.equal(broke.status, 402);
  assert.equal(broke.type, "budget_exceeded");

  const unreachable = await rejection(new GatewayLLMClient({ baseUrl: "http://127.0.0.1:9", retries: 0 }).chat("a", hello));
  assert.equal(unreachable.type, "network_error");
});

test("a 429 is retried after its Retry-After and then served", async () => {
  const { url } = await gateway({ GATEWAY_RATE_RPS: "1", GATEWAY_RATE_BURST: "1" });
  const client = new GatewayLLMClient({ baseUrl: url, retries: 2 });
  await client.chat("ts-agent", hello);
  const started = Date.now();
  const reply = await client.chat("ts-agent", hello);
  assert.equal(reply.provider, "mock");
  assert.ok(Date.now() - started >= 900, "it waited for the bucket");
});

test("a stream cut by its provider throws from the iterator, after the text it sent", async () => {
  const { url } = await gateway();
  const client = new GatewayLLMClient({ baseUrl: url });
  const seen: string[] = [];
  const error = await rejection(
    (async () => {
      for await (const c of client.stream("ts-agent", hello, { model: "mock-cut" })) if (c.type === "text") seen.push(c.text);
    })(),
  );
  assert.ok(seen.join("").length > 0, "text came first");
  assert.equal(error.status, 0);
  assert.equal(error.type, "upstream_error");
});

test("aborting mid-stream cancels the call, and the gateway charges what was sent", async () => {
  const upstream = await fakeOpenAI((_body, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(chunk({ role: "assistant", content: "" }));
    res.write(chunk({ content: "The first words of a long answer" }));
    // and then nothing more: the client leaves first.
  });
  const { url } = await gateway({ LLM_PROVIDER: "openai", OPENAI_API_KEY: "sk-ts-test-0123456789", OPENAI_BASE_URL: upstream.url });
  const client = new GatewayLLMClient({ baseUrl: url });
  const abort = new AbortController();
  const error = await rejection(
    (async () => {
      for await (const c of client.stream("ts-agent", hello, { model: "gpt-4o-mini", signal: abort.signal })) {
        if (c.type === "text") abort.abort();
      }
    })(),
  );
  assert.equal(error.type, "aborted");
  await upstream.closed;
  upstream.server.close();
  // The cut is settled once the gateway sees the client leave.
  let spent = 0;
  for (let i = 0; i < 100 && spent === 0; i++) {
    spent = (await client.usage()).day.spent_usd;
    if (spent === 0) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(spent > 0, "the partial answer was charged");
});

test("timeoutMs cancels a call the gateway is slow to answer", async () => {
  const { url } = await gateway();
  const client = new GatewayLLMClient({ baseUrl: url, timeoutMs: 200 });
  const started = Date.now();
  const slow = await rejection(client.chat("ts-agent", hello, { model: "mock-slow-5000" }));
  assert.equal(slow.type, "timeout");
  assert.ok(Date.now() - started < 4000, "it did not wait for the answer");
  const slowStream = await rejection(collect(client.stream("ts-agent", hello, { model: "mock-slow-5000" })));
  assert.equal(slowStream.type, "timeout");
});
