//! The soak: mixed traffic through the real binary (whole answers, streams,
//! a failing upstream, streams the upstream cuts, clients that leave
//! mid-stream), then the books are checked: the ledger holds exactly what the
//! clients were told they spent plus what cut streams were charged (as their
//! log lines say), `/metrics` counts what the clients counted, no reservation
//! is left, and the resident memory is reported at start and end.
//!
//! CI runs a short form. The full run, with its figures printed:
//!
//! ```text
//! SOAK_REQUESTS=100000 cargo test --release --test e2e soak -- --nocapture
//! ```

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::binary::{start, usage};

/// What one request of the mix does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Whole,
    Stream,
    Failing,
    Cut,
    Leave,
}

impl Kind {
    fn of(i: u64) -> Self {
        match i % 10 {
            0..=3 => Self::Whole,
            4..=6 => Self::Stream,
            7 => Self::Failing,
            8 => Self::Cut,
            _ => Self::Leave,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::Stream => "stream",
            Self::Failing => "failing",
            Self::Cut => "cut",
            Self::Leave => "leave",
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn sse(text: &str) -> Bytes {
    let chunk = json!({"choices": [{"index": 0, "delta": {"content": text}}]});
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// An OpenAI upstream with keep-alive (100,000 requests must not use up
/// ports), answering each request as its last message asks.
async fn answer(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let asks = body["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
    let text = |text: &'static str| Ok::<_, std::io::Error>(Frame::data(sse(text)));
    let end =
        "data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 12, \"completion_tokens\": 6}}\n\ndata: [DONE]\n\n";
    let reply: Body = match asks.as_str() {
        "whole" => {
            let answer = json!({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "All good."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 4}});
            http_body_util::Full::new(Bytes::from(answer.to_string()))
                .map_err(|e| match e {})
                .boxed()
        }
        "failing" => {
            let error = json!({"error": {"message": "The server had an error", "type": "server_error"}});
            let response = Response::builder().status(500).body(
                http_body_util::Full::new(Bytes::from(error.to_string()))
                    .map_err(|e| match e {})
                    .boxed(),
            );
            return Ok(response.unwrap());
        }
        "stream" => {
            let frames = [
                text("Hello "),
                text("there."),
                Ok(Frame::data(Bytes::from_static(end.as_bytes()))),
            ];
            BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
        }
        // Text, then the end of the body without `[DONE]`.
        "cut" => BodyExt::boxed(StreamBody::new(futures_util::stream::iter([
            text("Half an "),
            text("answer"),
        ]))),
        _ => {
            let first = futures_util::stream::iter([text("Still thinking")]);
            BodyExt::boxed(StreamBody::new(futures_util::StreamExt::chain(
                first,
                futures_util::stream::pending(),
            )))
        }
    };
    let content_type = if body["stream"] == true {
        "text/event-stream"
    } else {
        "application/json"
    };
    Ok(Response::builder()
        .header("content-type", content_type)
        .body(reply)
        .unwrap())
}

async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    url
}

/// What the clients saw, in all.
#[derive(Default)]
struct Seen {
    served: AtomicU64,
    failed: AtomicU64,
    left: AtomicU64,
    /// The `cost_usd` of every served call, in nano-USD.
    cost_nanos: AtomicU64,
}

impl Seen {
    fn served(&self, cost_usd: f64) {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.cost_nanos
            .fetch_add((cost_usd * 1e9).round() as u64, Ordering::Relaxed);
    }
}

async fn one(client: &reqwest::Client, port: u16, i: u64, seen: &Seen) {
    let kind = Kind::of(i);
    let streamed = !matches!(kind, Kind::Whole | Kind::Failing);
    let path = if streamed { "/v1/chat/stream" } else { "/v1/chat" };
    let body = json!({"agent_id": format!("agent-{}", i % 7), "model": "gpt-4o-mini", "max_tokens": 64,
        "messages": [{"role": "user", "content": kind.name()}]});
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut response = client.post(url).json(&body).send().await.unwrap();
    if !streamed {
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        match kind {
            Kind::Whole => {
                assert_eq!(status, 200, "{body}");
                seen.served(body["cost_usd"].as_f64().unwrap());
            }
            _ => {
                assert_eq!(status, 502, "{body}");
                seen.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        return;
    }
    assert_eq!(response.status(), 200, "{kind:?}");
    if kind == Kind::Leave {
        let first = response.chunk().await.unwrap().expect("a first frame");
        assert!(String::from_utf8_lossy(&first).contains("Still thinking"));
        seen.left.fetch_add(1, Ordering::Relaxed);
        return; // Dropping the response closes the connection mid-stream.
    }
    let text = response.text().await.unwrap();
    let last = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a last frame");
    let last: Value = serde_json::from_str(last).unwrap();
    match kind {
        Kind::Stream => seen.served(last["cost_usd"].as_f64().unwrap_or_else(|| panic!("{text}"))),
        _ => {
            assert_eq!(last["error"]["type"], "upstream_error", "{text}");
            seen.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The sum of a counter's samples whose labels contain `labels`.
fn total(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(client: &reqwest::Client, port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    client.get(url).send().await.unwrap().text().await.unwrap()
}

#[test]
fn mixed_traffic_leaves_the_ledger_the_metrics_and_memory_in_order() {
    let requests: u64 = std::env::var("SOAK_REQUESTS").map_or(2_000, |n| n.parse().unwrap());
    let clients: u64 = 32;
    let db = std::env::temp_dir().join(format!("chrysalis-soak-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(upstream());
    let env = [
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-proj-soak-0123456789"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("GATEWAY_DB", db.to_str().unwrap()),
        ("GATEWAY_RATE_RPS", "1000000"),
        ("GATEWAY_RATE_BURST", "1000000"),
        // A tenth of the calls fail on purpose: the circuit must stay closed for the rest.
        ("CIRCUIT_FAILURE_THRESHOLD", "1000000000"),
    ];
    let gateway = start(&env);
    let (port, pid) = (gateway.port, gateway.child.id());
    let rss_start = rss_kib(pid);
    let seen = Arc::new(Seen::default());
    let started = tokio::time::Instant::now();
    let metrics = runtime.block_on(async {
        let client = reqwest::Client::new();
        let next = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (client, next, seen) = (client.clone(), next.clone(), seen.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= requests {
                            return;
                        }
                        one(&client, port, i, &seen).await;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        // Streams the clients left end when the gateway reads the close: wait for that.
        loop {
            let metrics = scrape(&client, port).await;
            if total(&metrics, "gateway_requests_in_flight", "") == 0.0 {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let elapsed = started.elapsed();
    let rss_end = rss_kib(pid);
    let live = usage(&runtime, port);
    let (_, logs) = gateway.terminate();

    let (served, failed, left) = (
        seen.served.load(Ordering::Relaxed),
        seen.failed.load(Ordering::Relaxed),
        seen.left.load(Ordering::Relaxed),
    );
    assert_eq!(served + failed + left, requests);
    let outcome = |o: &str| total(&metrics, "gateway_requests_total", &format!("outcome=\"{o}\""));
    assert_eq!(outcome("success"), served as f64, "served");
    assert_eq!(outcome("error"), failed as f64, "failed");
    assert_eq!(outcome("cancelled"), left as f64, "left");
    assert_eq!(live["day"]["reserved_usd"], 0.0, "no reservation left: {live}");

    // What cut and left streams were charged, as their log lines say.
    let cut_nanos: f64 = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["status"] == 499 || l["error_type"] == "upstream_error")
        .map(|l| (l["cost_usd"].as_f64().unwrap() * 1e9).round())
        .sum();
    let client_usd = seen.cost_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let charged_usd = client_usd + cut_nanos / 1e9;
    let restarted = start(&env);
    let ledger_usd = usage(&runtime, restarted.port)["day"]["spent_usd"].as_f64().unwrap();
    drop(restarted);
    let _ = std::fs::remove_file(&db);
    // Each row is kept in whole nano-USD.
    let rounding = requests as f64 * 1e-9;
    assert!(cut_nanos > 0.0, "cut and left streams were charged");
    assert!(
        (ledger_usd - charged_usd).abs() <= rounding,
        "ledger {ledger_usd}, charged {charged_usd}"
    );
    let metric_usd = total(&metrics, "gateway_cost_usd_total", "");
    assert!(
        (metric_usd - ledger_usd).abs() <= rounding,
        "metric {metric_usd}, ledger {ledger_usd}"
    );
    println!(
        "soak: {requests} requests in {:.1} s ({:.0}/s): {served} served, {failed} failed, {left} left; \
         ledger ${ledger_usd:.6} = clients ${client_usd:.6} + cut ${:.6}; RSS {rss_start} KiB -> {rss_end} KiB",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        cut_nanos / 1e9,
    );
    assert!(
        rss_end < rss_start + 128 * 1024,
        "RSS grew from {rss_start} to {rss_end} KiB"
    );
}
