// Starts the real gateway binary (GATEWAY_BIN, else the workspace's debug
// build) on a free port, and a fake OpenAI upstream when a test needs one.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const binary = process.env.GATEWAY_BIN ?? resolve(here, "../../../../target/debug/gateway");

export interface RunningGateway {
  url: string;
  stop(): void;
}

export async function startGateway(env: Record<string, string>): Promise<RunningGateway> {
  const db = join(mkdtempSync(join(tmpdir(), "chrysalis-ts-")), "ledger.db");
  const child: ChildProcess = spawn(binary, [], {
    env: {
      PATH: process.env.PATH ?? "",
      LLM_PROVIDER: "mock",
      GATEWAY_HOST: "127.0.0.1",
      GATEWAY_PORT: "0",
      GATEWAY_DB: db,
      GATEWAY_LOG_FORMAT: "json",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolveUrl, reject) => {
    child.once("exit", (code) => reject(new Error(`the gateway exited (${code}) before listening`)));
    lines.on("line", (line) => {
      if (!line.includes("gateway listening")) return;
      const addr = (JSON.parse(line) as { addr?: string; fields?: { addr?: string } });
      resolveUrl(`http://${addr.addr ?? addr.fields?.addr}`);
    });
  });
  return { url, stop: () => child.kill("SIGKILL") };
}

/** A fake OpenAI upstream answering each chat completion with `handler`. */
export async function fakeOpenAI(handler: (body: Record<string, unknown>, res: ServerResponse) => void): Promise<{ url: string; server: Server; closed: Promise<void> }> {
  let closedResolve: () => void = () => {};
  const closed = new Promise<void>((r) => (closedResolve = r));
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = "";
    req.on("data", (c: Buffer) => (raw += c.toString()));
    req.on("end", () => handler(JSON.parse(raw || "{}") as Record<string, unknown>, res));
    res.on("close", () => closedResolve());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}/v1`, server, closed };
}

/** An OpenAI streaming chunk. */
export function chunk(delta: Record<string, unknown>, finish: string | null = null): string {
  return `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "gpt-4o-mini", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
}
