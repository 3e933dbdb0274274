//! The load benchmark: a fast fake OpenAI upstream on 127.0.0.1, driven
//! directly and through the real `gateway` binary in front of it, in one run.
//!
//! `cargo bench --bench load` prints one table: requests/s, p50 and p99
//! latency (to the first chunk, for streams) and to the last byte, the
//! latency the gateway adds, the CPU time the gateway process spends per
//! request (which, unlike the ratio to the direct rate, does not depend on
//! how much of the two cores the load generator takes), and its peak RSS;
//! then the memory of 1,000 concurrent open streams.
//!
//! Knobs, for comparing runs: `LOAD_SECONDS` (per row, default 3),
//! `LOAD_CHUNKS` (text chunks per stream, default 4),
//! `LOAD_MODEL` (default gpt-4o-mini, priced, so each call commits to the
//! ledger; an unpriced name skips the ledger), `LOAD_PROVIDER=mock` (the
//! gateway without its upstream hop), `LOAD_LOG=<file>` (keep the gateway's
//! log), and `RUST_LOG`, `GATEWAY_WORKERS`, `GATEWAY_DB_SYNC`, `GATEWAY_DATABASE_URL`,
//! `GATEWAY_DATABASE_SCHEMA` (the shared PostgreSQL ledger), passed on.
//! `LOAD_SERVE=1` only starts both, prints their addresses and the
//! gateway's pid, and waits: for driving with wrk under a profiler.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

const JSON_ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! I am doing well, thank you for asking."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":12,"total_tokens":26}}"#;

fn sse_answer() -> String {
    let mut body = String::new();
    let chunk = |delta: &str| {
        format!(
            r#"data: {{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{{"index":0,"delta":{delta},"finish_reason":null}}]}}"#
        ) + "\n\n"
    };
    body.push_str(&chunk(r#"{"role":"assistant","content":""}"#));
    let words = ["Hello!", " I am", " doing", " well."];
    let count = std::env::var("LOAD_CHUNKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(words.len());
    for word in words.iter().cycle().take(count) {
        body.push_str(&chunk(&format!(r#"{{"content":"{word}"}}"#)));
    }
    body.push_str(r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":14,"completion_tokens":5,"total_tokens":19}}"#);
    body.push_str("\n\ndata: [DONE]\n\n");
    body
}

/// The fake upstream: answers at once, or, for the `stall` model, sends one
/// chunk and holds the stream open.
async fn upstream(request: Request<Incoming>, sse: Arc<String>) -> Result<Response<StreamBody>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = std::str::from_utf8(&body).unwrap_or("");
    let stall = text.contains("\"stall\"");
    let stream = text.contains("\"stream\":true");
    let (content_type, answer): (&str, StreamBody) = match (stream, stall) {
        (true, true) => (
            "text/event-stream",
            StreamBody::stalled(sse.split_inclusive("\n\n").take(2).collect()),
        ),
        (true, false) => (
            "text/event-stream",
            StreamBody::full(Bytes::from(sse.as_bytes().to_vec())),
        ),
        _ => (
            "application/json",
            StreamBody::full(Bytes::from_static(JSON_ANSWER.as_bytes())),
        ),
    };
    Ok(Response::builder()
        .header("content-type", content_type)
        .body(answer)
        .unwrap())
}

type StreamBody = http_body_util::Either<
    Full<Bytes>,
    http_body_util::StreamBody<futures_util::stream::BoxStream<'static, Result<hyper::body::Frame<Bytes>, Infallible>>>,
>;

trait Bodies {
    fn full(bytes: Bytes) -> Self;
    fn stalled(first: String) -> Self;
}

impl Bodies for StreamBody {
    fn full(bytes: Bytes) -> Self {
        Self::Left(Full::new(bytes))
    }

    fn stalled(first: String) -> Self {
        use futures_util::StreamExt;
        let first = futures_util::stream::once(async move { Ok(hyper::body::Frame::data(Bytes::from(first))) });
        let never = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            Ok(hyper::body::Frame::data(Bytes::new()))
        });
        Self::Right(http_body_util::StreamBody::new(first.chain(never).boxed()))
    }
}

fn start_upstream() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let sse = Arc::new(sse_answer());
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                let sse = sse.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |r| upstream(r, sse.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

struct Gateway {
    child: Child,
    url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// CPU time the gateway process has used (user and system), from `/proc`.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: u64 = fields
            .get(11..13)
            .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
        // Linux reports these in USER_HZ, 100 on every mainstream build.
        Duration::from_millis(ticks * 10)
    }

    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

async fn start_gateway(upstream: SocketAddr) -> Gateway {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = std::env::temp_dir().join(format!("chrysalis-load-{}.db", std::process::id()));
    // `LOAD_PROVIDER=mock` measures the gateway without its upstream hop.
    let provider = std::env::var("LOAD_PROVIDER").unwrap_or_else(|_| "openai".into());
    let _ = std::fs::remove_file(&db);
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .envs([
            ("LLM_PROVIDER", provider.as_str()),
            ("OPENAI_API_KEY", "sk-bench-0123456789"),
            ("OPENAI_BASE_URL", format!("http://{upstream}/v1").as_str()),
            ("GATEWAY_HOST", "127.0.0.1"),
            ("GATEWAY_PORT", port.to_string().as_str()),
            ("GATEWAY_DB", db.to_str().unwrap()),
            ("GATEWAY_RATE_RPS", "1000000000"),
            ("GATEWAY_RATE_BURST", "1000000000"),
            ("LLM_DAILY_BUDGET_USD", "1000000000"),
            ("LLM_MONTHLY_BUDGET_USD", "1000000000"),
            ("GATEWAY_MAX_INFLIGHT", "100000"),
        ])
        // Knobs to compare runs: passed on when set.
        .envs(
            [
                "RUST_LOG",
                "GATEWAY_WORKERS",
                "GATEWAY_DB_SYNC",
                "GATEWAY_DATABASE_URL",
                "GATEWAY_DATABASE_SCHEMA",
            ]
            .into_iter()
            .filter_map(|k| Some((k, std::env::var(k).ok()?))),
        )
        .env("GATEWAY_LOG_FORMAT", "json")
        .stdout(match std::env::var("LOAD_LOG") {
            Ok(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            Err(_) => Stdio::null(),
        })
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway binary runs");
    let gateway = Gateway {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{}/healthz", gateway.url)).send().await.is_ok() {
            return gateway;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the gateway did not start");
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Json,
    Stream,
}

struct Run {
    requests: usize,
    seconds: f64,
    /// Whole requests, or time to first chunk for streams.
    latencies: Vec<Duration>,
    /// Whole requests, to the stream's last byte.
    wholes: Vec<Duration>,
    /// Requests made, the warm-up's among them.
    all_requests: usize,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index]
}

fn body(route: &str, mode: Mode) -> Bytes {
    let stream = if mode == Mode::Stream { r#","stream":true"# } else { "" };
    let agent = if route == "/v1/chat" || route == "/v1/chat/stream" {
        r#""agent_id":"bench","#
    } else {
        ""
    };
    let model = std::env::var("LOAD_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
    Bytes::from(format!(
        r#"{{{agent}"model":"{model}","messages":[{{"role":"user","content":"Hello, how are you?"}}],"max_tokens":64{stream}}}"#
    ))
}

async fn drive(client: &reqwest::Client, url: &str, body: Bytes, mode: Mode, concurrency: usize, seconds: f64) -> Run {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let warm_until = Instant::now() + Duration::from_millis(300);
    let workers = (0..concurrency).map(|_| {
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        tokio::spawn(async move {
            let (mut latencies, mut wholes, mut made) = (Vec::new(), Vec::new(), 0);
            while Instant::now() < deadline {
                made += 1;
                let started = Instant::now();
                let mut response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{url}: {}", response.status());
                let mut first = None;
                while let Some(chunk) = response.chunk().await.unwrap() {
                    first.get_or_insert_with(|| (started.elapsed(), chunk.len()));
                }
                let latency = match mode {
                    Mode::Json => started.elapsed(),
                    Mode::Stream => first.expect("a stream sends something").0,
                };
                if started >= warm_until {
                    latencies.push(latency);
                    wholes.push(started.elapsed());
                }
            }
            (latencies, wholes, made)
        })
    });
    let (mut latencies, mut wholes, mut all_requests) = (Vec::new(), Vec::new(), 0);
    for worker in workers.collect::<Vec<_>>() {
        let (some, whole, made) = worker.await.unwrap();
        latencies.extend(some);
        wholes.extend(whole);
        all_requests += made;
    }
    latencies.sort();
    wholes.sort();
    Run {
        requests: latencies.len(),
        seconds: seconds - 0.3,
        latencies,
        wholes,
        all_requests,
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let seconds: f64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let upstream = start_upstream();
    let gateway = start_gateway(upstream).await;
    if std::env::var_os("LOAD_SERVE").is_some() {
        // For profiling with an outside load tool (wrk, perf): serve, print, wait.
        println!(
            "upstream http://{upstream}  gateway {} (pid {})",
            gateway.url,
            gateway.child.id()
        );
        return std::future::pending().await;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let direct = format!("http://{upstream}/v1/chat/completions");

    println!("| path | mode | conc. | req/s | p50 µs | p99 µs | added p50 µs | added p99 µs | whole p50 µs | added whole p50 µs | gateway CPU µs/req | vs direct |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for mode in [Mode::Json, Mode::Stream] {
        for concurrency in [1, 64] {
            let base = drive(&client, &direct, body("direct", mode), mode, concurrency, seconds).await;
            let rows = [
                ("fake upstream, direct", None),
                ("gateway /v1/chat/completions", Some("/v1/chat/completions")),
                (
                    "gateway /v1/chat",
                    Some(if mode == Mode::Stream {
                        "/v1/chat/stream"
                    } else {
                        "/v1/chat"
                    }),
                ),
            ];
            for (name, route) in rows {
                let cpu_before = gateway.cpu();
                let run = match route {
                    None => None,
                    Some(route) => {
                        let url = format!("{}{route}", gateway.url);
                        Some(drive(&client, &url, body(route, mode), mode, concurrency, seconds).await)
                    }
                };
                let cpu = run
                    .as_ref()
                    .map(|run| micros(gateway.cpu() - cpu_before) / run.all_requests as f64);
                let run = run.as_ref().unwrap_or(&base);
                let added = |q| micros(run.quantile(q)) - micros(base.quantile(q));
                let whole = micros(quantile(&run.wholes, 0.5));
                let added_whole = whole - micros(quantile(&base.wholes, 0.5));
                let mode_name = if mode == Mode::Json {
                    "JSON"
                } else {
                    "stream (to 1st chunk)"
                };
                println!(
                    "| {name} | {mode_name} | {concurrency} | {:.0} | {:.0} | {:.0} | {} | {} | {whole:.0} | {} | {} | {:.2}x |",
                    run.rps(),
                    micros(run.quantile(0.5)),
                    micros(run.quantile(0.99)),
                    if route.is_some() {
                        format!("{:.0}", added(0.5))
                    } else {
                        "-".into()
                    },
                    if route.is_some() {
                        format!("{:.0}", added(0.99))
                    } else {
                        "-".into()
                    },
                    if route.is_some() {
                        format!("{added_whole:.0}")
                    } else {
                        "-".into()
                    },
                    cpu.map_or("-".into(), |cpu| format!("{cpu:.0}")),
                    run.rps() / base.rps(),
                );
            }
        }
    }
    println!(
        "\ngateway peak RSS under this load: {:.1} MiB",
        gateway.rss_kib("VmHWM:") as f64 / 1024.0
    );

    let before = gateway.rss_kib("VmRSS:");
    let stall =
        Bytes::from_static(br#"{"agent_id":"bench","model":"stall","messages":[{"role":"user","content":"Hi"}]}"#);
    let url = format!("{}/v1/chat/stream", gateway.url);
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel(1000);
    let streams: Vec<_> = (0..1000)
        .map(|_| {
            let (client, url, stall, opened) = (client.clone(), url.clone(), stall.clone(), opened_tx.clone());
            tokio::spawn(async move {
                let mut response = client.post(&url).body(stall).send().await.unwrap();
                let first = response.chunk().await.unwrap();
                opened.send(first.is_some()).await.unwrap();
                std::future::pending::<()>().await;
                drop(response);
            })
        })
        .collect();
    let mut open = 0;
    while open < 1000 {
        assert!(opened_rx.recv().await.unwrap(), "each stream sent its first chunk");
        open += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = gateway.rss_kib("VmRSS:");
    println!(
        "1,000 open streams: gateway RSS {:.1} MiB (from {:.1} MiB idle after the load), {:.1} KiB per stream; peak RSS {:.1} MiB",
        during as f64 / 1024.0,
        before as f64 / 1024.0,
        (during.saturating_sub(before)) as f64 / 1000.0,
        gateway.rss_kib("VmHWM:") as f64 / 1024.0
    );
    for stream in streams {
        stream.abort();
    }
    println!(
        "machine: {} cores; gateway, fake upstream and load generator share them",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
