import { test } from "node:test";
import assert from "node:assert/strict";
import { sseEvents } from "../src/sse.js";

function streamOf(pieces: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(encoder.encode(piece));
      controller.close();
    },
  });
}

async function events(pieces: string[]) {
  const out = [];
  for await (const event of sseEvents(streamOf(pieces))) out.push(event);
  return out;
}

test("frames split anywhere, CRLF and CR line ends, comments and multi-line data", async () => {
  const body = ": keep-alive\r\n\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: line one\ndata: line two\n\ndata: cr\r\rdata: last\n\n";
  const expected = [
    { event: "message_start", data: '{"a":1}' },
    { event: "message", data: "line one\nline two" },
    { event: "message", data: "cr" },
    { event: "message", data: "last" },
  ];
  assert.deepEqual(await events([body]), expected);
  for (let size = 1; size <= 7; size++) {
    const pieces = [];
    for (let i = 0; i < body.length; i += size) pieces.push(body.slice(i, i + size));
    assert.deepEqual(await events(pieces), expected, `pieces of ${size}`);
  }
});

test("a multi-byte character split across reads stays whole", async () => {
  const bytes = new TextEncoder().encode("data: héllo 👋\n\n");
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
      controller.close();
    },
  });
  const out = [];
  for await (const event of sseEvents(stream)) out.push(event.data);
  assert.deepEqual(out, ["héllo 👋"]);
});
