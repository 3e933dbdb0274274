//! Several replicas sharing one rate-limit bucket in a real Redis, and what
//! happens when that Redis goes away and comes back. The shared server's URL
//! comes from `GATEWAY_TEST_REDIS_URL` (`.ci/run` sets it); without it these
//! tests say so and do nothing. The outage test starts a private
//! `redis-server` of its own on a free port, so it can kill it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn redis_url() -> Option<String> {
    let url = std::env::var("GATEWAY_TEST_REDIS_URL").ok();
    if url.is_none() {
        println!("skipped: GATEWAY_TEST_REDIS_URL is not set, so there is no Redis to share buckets in");
    }
    url
}

/// A key prefix no other test (or run) uses.
fn fresh_prefix() -> String {
    format!(
        "chrysalis-test:{}:{}:",
        std::process::id(),
        temp_db().file_name().unwrap().to_string_lossy()
    )
}

async fn replica(url: &str, prefix: &str, rate: &str, burst: &str) -> Gateway {
    Gateway::start(&[
        "--llm-provider",
        "mock",
        "--gateway-rate-rps",
        rate,
        "--gateway-rate-burst",
        burst,
        "--gateway-redis-url",
        url,
        "--gateway-redis-prefix",
        prefix,
        "--gateway-rate-key",
        "agent",
    ])
    .await
}

fn ask(agent: &str) -> Value {
    serde_json::json!({"agent_id": agent, "model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})
}

async fn metric(gateway: &Gateway, line_start: &str) -> Option<String> {
    let text = gateway.get("/metrics").send().await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(line_start)).map(str::to_owned)
}

#[tokio::test]
async fn three_replicas_admit_together_what_one_would() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_prefix();
    // A bucket of 30 that refills about once in 17 minutes: what is admitted is the bucket.
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&url, &prefix, "0.001", "30").await);
    }
    let mut admitted = 0;
    let mut limited = 0;
    for round in 0..30 {
        for gateway in &replicas {
            let (status, body) = gateway.chat(ask("team")).await;
            match status.as_u16() {
                200 => admitted += 1,
                429 => {
                    limited += 1;
                    assert_eq!(body["error"]["type"], "rate_limited");
                }
                other => panic!("round {round}: {other} {body}"),
            }
        }
    }
    assert_eq!((admitted, limited), (30, 60), "one shared bucket of 30, not three");
    for gateway in &replicas {
        let up = metric(gateway, "gateway_shared_state_up{").await;
        assert_eq!(up.as_deref(), Some("gateway_shared_state_up{store=\"redis\"} 1"));
    }
}

#[tokio::test]
async fn the_shared_bucket_tells_the_wait_and_what_is_left() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_prefix();
    let (a, b) = (
        replica(&url, &prefix, "1", "2").await,
        replica(&url, &prefix, "1", "2").await,
    );
    let first = a.post("/v1/chat").json(&ask("x")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
    let second = b.post("/v1/chat").json(&ask("x")).send().await.unwrap();
    assert_eq!(second.headers()["x-ratelimit-remaining-requests"], "0");
    let third = a.post("/v1/chat").json(&ask("x")).send().await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "1", "a token a second");
}

/// A `redis-server` of the test's own, on a free port, killed when dropped.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (it is installed with Redis)");
        Self { child, port }
    }

    async fn until_up(&self) {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the private redis-server did not start");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn while_redis_is_down_each_replica_limits_alone_and_says_so_then_shares_again() {
    if redis_url().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = PrivateRedis::start(port);
    redis.until_up().await;
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = fresh_prefix();
    let (a, b) = (
        replica(&url, &prefix, "0.001", "2").await,
        replica(&url, &prefix, "0.001", "2").await,
    );
    assert_eq!(a.chat(ask("x")).await.0, 200);
    assert_eq!(b.chat(ask("x")).await.0, 200);
    assert_eq!(a.chat(ask("x")).await.0, 429, "the shared bucket of 2 is spent");

    drop(redis);
    // Each replica now limits with its own bucket of 2, untouched so far, so
    // each admits 2 more; no request hangs on the dead store.
    let started = tokio::time::Instant::now();
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for gateway in [&a, &a, &a, &b, &b, &b] {
            statuses.push(gateway.chat(ask("x")).await.0.as_u16());
        }
        statuses
    };
    assert_eq!(
        statuses,
        [200, 200, 429, 200, 200, 429],
        "local buckets while the store is away"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let down = metric(&a, "gateway_shared_state_up{").await;
    assert_eq!(down.as_deref(), Some("gateway_shared_state_up{store=\"redis\"} 0"));

    let redis = PrivateRedis::start(port);
    redis.until_up().await;
    // Back: each replica returns to the shared store at its next calls.
    for gateway in [&a, &b] {
        until_shared(gateway).await;
    }
    let mut after = Vec::new();
    for gateway in [&b, &a, &b] {
        after.push(gateway.chat(ask("z")).await.0.as_u16());
    }
    assert_eq!(
        after,
        [200, 200, 429],
        "one bucket of 2 for agent z across both replicas again"
    );
    drop(redis);
}

/// Calls `gateway` (as agents of their own) until its shared store answers again.
async fn until_shared(gateway: &Gateway) {
    for n in 0..100 {
        gateway.chat(ask(&format!("probe-{n}"))).await;
        if metric(gateway, "gateway_shared_state_up{")
            .await
            .is_some_and(|l| l.ends_with(" 1"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the replica did not return to the shared store");
}
