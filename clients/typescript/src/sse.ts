/**
 * Server-sent events from a byte stream, as the HTML standard reads them:
 * lines end in LF, CRLF or CR (also when a CR and its LF arrive in two
 * reads), `:` lines are comments, several `data:` lines join with LF, and a
 * blank line dispatches the event. Frames may be split across reads anywhere.
 */
export interface SseEvent {
  event: string;
  data: string;
}

export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  let event = "";
  let afterCr = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      if (afterCr && buffer.startsWith("\n")) buffer = buffer.slice(1);
      afterCr = false;
      for (;;) {
        const end = buffer.search(/[\r\n]/);
        if (end < 0) break;
        if (buffer[end] === "\r" && end + 1 === buffer.length) afterCr = true;
        const line = buffer.slice(0, end);
        const skip = buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1;
        buffer = buffer.slice(end + skip);
        if (line === "") {
          if (data.length > 0) yield { event: event || "message", data: data.join("\n") };
          data = [];
          event = "";
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "event") event = value;
      }
    }
  } finally {
    // Leaving early (a break, an error, an abort) closes the connection.
    await reader.cancel().catch(() => {});
  }
}
