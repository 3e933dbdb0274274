//! Several gateway binaries sharing one budget in a real PostgreSQL: the
//! race for the last dollars, a replica killed mid-call, every replica
//! killed and restarted, and the database cut off by a proxy. The server's
//! URL comes from `GATEWAY_TEST_DATABASE_URL` (`.ci/run` sets it); without
//! it these tests say so and do nothing. Each test has a schema of its own.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::binary::{start, usage, Running};
use crate::support::temp_db;

/// What one call costs: the mock's 11 output tokens at $1,000 a million.
/// With max_tokens 11 and input free, a call is reserved for exactly that.
const CALL_USD: f64 = 0.011;

fn database_url() -> Option<String> {
    let url = std::env::var("GATEWAY_TEST_DATABASE_URL").ok();
    if url.is_none() {
        println!("skipped: GATEWAY_TEST_DATABASE_URL is not set, so there is no PostgreSQL to share a budget in");
    }
    url
}

/// A schema of the test's own, dropped at the end.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn fresh(url: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self {
            url: url.to_owned(),
            name: format!("chrysalis_test_{}_{n}_{nanos}", std::process::id()),
        }
    }

    /// One statement's first row, straight to the database (no proxy).
    async fn query(&self, sql: &str) -> tokio_postgres::Row {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let sql = sql.replace("{schema}", &self.name);
        client.query_one(&sql, &[]).await.unwrap()
    }

    /// Nano-dollars spent today and held by live reservations, as the database has them.
    async fn standing(&self) -> (i64, i64) {
        let row = self
            .query(
                "SELECT (SELECT COALESCE(SUM(cost_nanos), 0)::bigint FROM {schema}.spend),
                        (SELECT COALESCE(SUM(nanos), 0)::bigint FROM {schema}.reservations WHERE expires_at > clock_timestamp())",
            )
            .await;
        (row.get(0), row.get(1))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Its own thread and runtime: a drop may come inside or outside one.
        let _ = std::thread::spawn(move || {
            Runtime::new().unwrap().block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
    }
}

fn prices_file() -> std::path::PathBuf {
    let path = temp_db().with_extension("prices.json");
    std::fs::write(&path, r#"{"mock-1": {"input_per_mtok": 0, "output_per_mtok": 1000}}"#).unwrap();
    path
}

/// A gateway binary on the shared ledger at `url` (the schema's, unless
/// given), with a daily budget worth 50 calls.
fn replica(schema: &Schema, url: Option<&str>, extra: &[(&str, &str)]) -> Running {
    let (db, prices) = (temp_db(), prices_file());
    let mut env = vec![
        ("LLM_PROVIDER", "mock"),
        ("GATEWAY_DB", db.to_str().unwrap()),
        ("LLM_PRICES_FILE", prices.to_str().unwrap()),
        ("GATEWAY_DATABASE_URL", url.unwrap_or(&schema.url)),
        ("GATEWAY_DATABASE_SCHEMA", &schema.name),
        ("LLM_DAILY_BUDGET_USD", "0.55"),
        ("LLM_BUDGET_DEFAULT_MAX_TOKENS", "11"),
        ("GATEWAY_RATE_RPS", "100000"),
        ("GATEWAY_RATE_BURST", "100000"),
    ];
    env.extend_from_slice(extra);
    start(&env)
}

async fn chat(client: &reqwest::Client, port: u16, agent: &str, path: &str) -> (u16, Value) {
    let body = json!({"agent_id": agent, "model": "mock-1", "messages": [{"role": "user", "content": "hi"}]});
    let response = client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = match path {
        // A stream's last frame holds its cost.
        "/v1/chat/stream" if status == 200 => {
            let last = text.lines().rev().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(last).unwrap()
        }
        _ => serde_json::from_str(&text).unwrap(),
    };
    (status, value)
}

fn spent(report: &Value, window: &str) -> f64 {
    report[window]["spent_usd"].as_f64().unwrap()
}

fn assert_usd(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

#[test]
fn three_replicas_racing_for_a_budget_worth_50_calls_admit_at_most_50() {
    let Some(url) = database_url() else { return };
    let schema = Schema::fresh(&url);
    let replicas: Vec<Running> = (0..3).map(|_| replica(&schema, None, &[])).collect();
    let runtime = Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let calls = (0..300).map(|i| chat(&client, replicas[i % 3].port, "team", "/v1/chat"));
    let results = runtime.block_on(futures_util::future::join_all(calls));
    let (mut admitted, mut charged) = (0, 0.0);
    for (status, body) in &results {
        match status {
            200 => {
                admitted += 1;
                charged += body["cost_usd"].as_f64().unwrap();
            }
            402 => assert_eq!(body["error"]["type"], "budget_exceeded", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    println!("3 replicas, 300 calls racing for a budget worth 50: {admitted} admitted");
    assert!((45..=50).contains(&admitted), "{admitted} admitted");
    assert_usd(charged, admitted as f64 * CALL_USD);
    for replica in &replicas {
        let report = usage(&runtime, replica.port);
        assert_usd(spent(&report, "day"), charged);
        assert_usd(spent(&report, "month"), charged);
        assert_eq!(report["day"]["reserved_usd"], 0.0, "{report}");
        assert_usd(report["day"]["by_agent"]["team"].as_f64().unwrap(), charged);
    }
}

#[test]
fn a_replica_killed_mid_call_releases_its_hold_when_the_reservation_expires() {
    let Some(url) = database_url() else { return };
    let schema = Schema::fresh(&url);
    let ttl = [("GATEWAY_RESERVATION_TTL_MS", "1500")];
    let steady = replica(&schema, None, &ttl);
    let mut doomed = replica(&schema, None, &[ttl[0], ("MOCK_LATENCY_MS", "600000")]);
    let runtime = Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let mut charged = 0.0;
    for agent in ["a", "b", "a"] {
        let (status, body) = runtime.block_on(chat(&client, steady.port, agent, "/v1/chat"));
        assert_eq!(status, 200, "{body}");
        charged += body["cost_usd"].as_f64().unwrap();
    }
    let port = doomed.port;
    let body = json!({"agent_id": "c", "model": "mock-1", "messages": [{"role": "user", "content": "hi"}]});
    let held = client
        .post(format!("http://127.0.0.1:{port}/v1/chat"))
        .json(&body)
        .send();
    // It never answers: its replica dies first.
    let _held = runtime.spawn(held);
    runtime.block_on(until(|| async { schema.standing().await.1 > 0 }));
    assert!(usage(&runtime, steady.port)["day"]["reserved_usd"].as_f64().unwrap() > 0.0);

    doomed.child.kill().unwrap(); // SIGKILL: the call never settles.
    doomed.child.wait().unwrap();
    let killed = tokio::time::Instant::now();
    runtime.block_on(until(|| async { schema.standing().await.1 == 0 }));
    let released = killed.elapsed();
    println!("a replica killed mid-call: its reservation released {released:?} after the kill (TTL 1.5 s)");
    assert!(released < Duration::from_secs(6), "released after {released:?}");

    let report = usage(&runtime, steady.port);
    assert_eq!(report["day"]["reserved_usd"], 0.0, "{report}");
    assert_usd(spent(&report, "day"), charged);
    assert_usd(spent(&report, "month"), charged);
}

#[test]
fn a_call_that_outlives_the_reservation_ttl_keeps_its_hold_while_its_replica_lives() {
    let Some(url) = database_url() else { return };
    let schema = Schema::fresh(&url);
    let gateway = replica(
        &schema,
        None,
        &[("GATEWAY_RESERVATION_TTL_MS", "1000"), ("MOCK_LATENCY_MS", "2500")],
    );
    let runtime = Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let port = gateway.port;
    let call = runtime.spawn(async move { chat(&client, port, "a", "/v1/chat").await });
    let expiry = "SELECT COALESCE(MAX(expires_at), 'epoch')::text FROM {schema}.reservations";
    let first = runtime.block_on(async {
        until(|| async { schema.standing().await.1 > 0 }).await;
        schema.query(expiry).await.get::<_, String>(0)
    });
    // Renewed (every quarter of the TTL) past the expiry it was made with, and still held.
    runtime.block_on(until(|| async {
        let later = schema.query(expiry).await.get::<_, String>(0);
        later > first && schema.standing().await.1 > 0
    }));
    assert!(!call.is_finished(), "the call is still running");
    let (status, body) = runtime.block_on(call).unwrap();
    assert_eq!(status, 200, "{body}");
    let (spent, held) = runtime.block_on(schema.standing());
    assert_eq!((spent, held), ((CALL_USD * 1e9).round() as i64, 0));
}

#[test]
fn every_replica_killed_and_restarted_keeps_the_exact_spend() {
    let Some(url) = database_url() else { return };
    let schema = Schema::fresh(&url);
    let runtime = Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let mut replicas: Vec<Running> = (0..3).map(|_| replica(&schema, None, &[])).collect();
    let mut charged = 0.0;
    let mut by_agent = std::collections::BTreeMap::<String, f64>::new();
    for i in 0..12 {
        let agent = ["a", "b", "c"][i % 3];
        let path = if i % 2 == 0 { "/v1/chat" } else { "/v1/chat/stream" };
        let (status, body) = runtime.block_on(chat(&client, replicas[i % 3].port, agent, path));
        assert_eq!(status, 200, "{body}");
        let cost = body["cost_usd"].as_f64().unwrap();
        charged += cost;
        *by_agent.entry(agent.to_owned()).or_default() += cost;
    }
    for replica in &mut replicas {
        replica.child.kill().unwrap(); // SIGKILL right after the last answers: no shutdown, no flush.
        replica.child.wait().unwrap();
    }
    drop(replicas);
    let restarted: Vec<Running> = (0..3).map(|_| replica(&schema, None, &[])).collect();
    for replica in &restarted {
        let report = usage(&runtime, replica.port);
        for window in ["day", "month"] {
            assert_usd(spent(&report, window), charged);
            for (agent, cost) in &by_agent {
                assert_usd(report[window]["by_agent"][agent].as_f64().unwrap(), *cost);
            }
        }
    }
    let migrations = runtime.block_on(schema.query("SELECT COUNT(*) FROM {schema}.schema_migrations"));
    assert_eq!(migrations.get::<_, i64>(0), 1, "six start-ups, one migration");
}

#[test]
fn a_cut_off_database_refuses_calls_at_once_then_nothing_is_lost_when_it_is_back() {
    let Some(url) = database_url() else { return };
    let schema = Schema::fresh(&url);
    let runtime = Runtime::new().unwrap();
    let proxy = runtime.block_on(Proxy::start(&url));
    let proxied = proxy.url(&url);
    let gateway = replica(
        &schema,
        Some(&proxied),
        &[("GATEWAY_STORE_TIMEOUT_MS", "300"), ("MOCK_LATENCY_MS", "1000")],
    );
    let client = reqwest::Client::new();
    let port = gateway.port;
    let first = runtime.block_on(futures_util::future::join_all(
        (0..4).map(|_| chat(&client, port, "a", "/v1/chat")),
    ));
    assert!(first.iter().all(|(status, _)| *status == 200), "{first:?}");
    let mut charged = 4.0 * CALL_USD;

    // A call admitted before the cut, answered during it: its spend must not be lost.
    let admitted = runtime.spawn({
        let client = client.clone();
        async move { chat(&client, port, "b", "/v1/chat").await }
    });
    runtime.block_on(until(|| async { schema.standing().await.1 > 0 }));
    proxy.set(Mode::Cut);
    let (status, body) = runtime.block_on(admitted).unwrap();
    assert_eq!(status, 200, "{body}");
    charged += body["cost_usd"].as_f64().unwrap();

    for _ in 0..3 {
        let asked = tokio::time::Instant::now();
        let (status, body) = runtime.block_on(chat(&client, port, "a", "/v1/chat"));
        let took = asked.elapsed();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["type"], "unavailable");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("spend ledger unreachable"),
            "{body}"
        );
        println!("database cut off: call refused (503) in {took:?}");
        assert!(took < Duration::from_secs(3), "refused after {took:?}");
    }
    let scraped = runtime.block_on(metrics(port));
    assert!(
        scraped.contains("gateway_shared_state_up{store=\"postgres\"} 0"),
        "{scraped}"
    );
    let logs = gateway.logs();
    assert!(
        logs.iter().any(|l| l.contains("shared spend ledger unreachable")),
        "{logs:?}"
    );
    let report = runtime.block_on(async {
        let response = reqwest::get(format!("http://127.0.0.1:{port}/v1/usage")).await.unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    });
    assert_eq!(report.0, 503, "{report:?}");
    assert_eq!(report.1["error"]["type"], "unavailable", "{report:?}");

    // The database's host goes silent: every call waits out the store timeout, no more.
    proxy.set(Mode::Stalled);
    for _ in 0..2 {
        let asked = tokio::time::Instant::now();
        let (status, body) = runtime.block_on(chat(&client, port, "a", "/v1/chat"));
        let took = asked.elapsed();
        assert_eq!(status, 503, "{body}");
        println!("database silent: call refused (503) in {took:?} (store timeout 300 ms)");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "refused after {took:?}"
        );
    }

    proxy.set(Mode::Open);
    // The settle that failed during the cut is retried until the database has it.
    runtime.block_on(until(|| async {
        schema.standing().await.0 == (charged * 1e9).round() as i64
    }));
    let (status, body) = runtime.block_on(chat(&client, port, "a", "/v1/chat"));
    assert_eq!(status, 200, "{body}");
    charged += body["cost_usd"].as_f64().unwrap();
    let report = usage(&runtime, port);
    assert_usd(spent(&report, "day"), charged);
    assert_usd(report["day"]["by_agent"]["b"].as_f64().unwrap(), CALL_USD);
    let scraped = runtime.block_on(metrics(port));
    assert!(
        scraped.contains("gateway_shared_state_up{store=\"postgres\"} 1"),
        "{scraped}"
    );
}

async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits for `condition`, checking every 20 ms, for at most 20 s.
async fn until<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the condition never held");
}

/// A TCP proxy to the database that can cut every connection (and refuse
/// new ones), or stall them (the database's host gone silent), until restored.
struct Proxy {
    port: u16,
    mode: watch::Sender<Mode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Cut,
    Stalled,
}

impl Proxy {
    async fn start(url: &str) -> Self {
        let config = tokio_postgres::Config::from_str(url).unwrap();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            other => panic!("a TCP host, not {other:?}"),
        };
        let target = format!("{host}:{}", config.get_ports().first().copied().unwrap_or(5432));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, watch) = watch::channel(Mode::Open);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let watch = watch.clone();
                let target = target.clone();
                tokio::spawn(forward(inbound, target, watch));
            }
        });
        Self { port, mode }
    }

    /// `url` with this proxy as its host.
    fn url(&self, url: &str) -> String {
        let config = tokio_postgres::Config::from_str(url).unwrap();
        let user = config.get_user().unwrap_or("postgres");
        let database = config.get_dbname().unwrap_or("postgres");
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Copies bytes both ways while the proxy is open; when it is cut, closes
/// the connection; when stalled, holds it open, silent, until restored.
async fn forward(mut inbound: TcpStream, target: String, mut mode: watch::Receiver<Mode>) {
    let now = *mode.borrow();
    if now == Mode::Open {
        let Ok(mut outbound) = TcpStream::connect(&target).await else {
            return;
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
            _ = mode.wait_for(|m| *m != Mode::Open) => {}
        }
    }
    if *mode.borrow() == Mode::Stalled {
        let _ = mode.wait_for(|m| *m != Mode::Stalled).await;
    }
}

#[test]
fn spend_answered_during_an_outage_survives_a_kill_and_is_recorded_by_the_next_start() {
    let Some(url) = database_url() else { return };
    let schema = Schema::fresh(&url);
    let runtime = Runtime::new().unwrap();
    let proxy = runtime.block_on(Proxy::start(&url));
    let proxied = proxy.url(&url);
    let db = temp_db();
    let env = [
        ("GATEWAY_DB", db.to_str().unwrap()),
        ("GATEWAY_STORE_TIMEOUT_MS", "300"),
        ("MOCK_LATENCY_MS", "1000"),
    ];
    let mut doomed = replica(&schema, Some(&proxied), &env);
    let port = doomed.port;
    let client = reqwest::Client::new();
    let call = runtime.spawn(async move { chat(&client, port, "b", "/v1/chat").await });
    runtime.block_on(until(|| async { schema.standing().await.1 > 0 }));
    proxy.set(Mode::Cut);
    let (status, body) = runtime.block_on(call).unwrap();
    assert_eq!(status, 200, "{body}");
    let cost = (body["cost_usd"].as_f64().unwrap() * 1e9).round() as i64;
    doomed.child.kill().unwrap(); // SIGKILL while its settle waits for the database.
    doomed.child.wait().unwrap();
    proxy.set(Mode::Open);
    assert_eq!(runtime.block_on(schema.standing()).0, 0, "not recorded yet");

    let next = replica(&schema, Some(&proxied), &env);
    runtime.block_on(until(|| async { schema.standing().await.0 == cost }));
    let report = usage(&runtime, next.port);
    assert_usd(report["day"]["by_agent"]["b"].as_f64().unwrap(), CALL_USD);
}

#[test]
fn an_unreachable_database_stops_start_up_naming_the_variable_not_the_password() {
    // A port nothing listens on: refused at once, no server needed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://gateway:s3cret-db-password-42@127.0.0.1:{port}/llm");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .envs([("LLM_PROVIDER", "mock"), ("GATEWAY_DATABASE_URL", url.as_str())])
        .env("GATEWAY_DB", temp_db())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("GATEWAY_DATABASE_URL"), "{said}");
    assert!(!said.contains("s3cret-db-password-42"), "{said}");
}
