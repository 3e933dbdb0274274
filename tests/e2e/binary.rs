//! The real `gateway` binary: start-up errors, graceful shutdown, crash safety, logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::{FakeUpstream, Reply};

fn gateway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn fails_with(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn a_missing_key_stops_start_up_naming_the_variable() {
    let stderr = fails_with(&mut gateway());
    assert!(stderr.contains("OPENAI_API_KEY"), "{stderr}");
    let stderr = fails_with(gateway().env("LLM_PROVIDER", "mock").env("LLM_FALLBACKS", "anthropic"));
    assert!(stderr.contains("ANTHROPIC_API_KEY"), "{stderr}");
}

#[test]
fn an_unknown_provider_or_a_malformed_number_stops_start_up() {
    let stderr = fails_with(gateway().env("LLM_PROVIDER", "gemini"));
    assert!(stderr.contains("LLM_PROVIDER"), "{stderr}");
    let stderr = fails_with(
        gateway()
            .env("LLM_PROVIDER", "mock")
            .env("LLM_FALLBACKS", "mock,gemini"),
    );
    assert!(
        stderr.contains("LLM_FALLBACKS") && stderr.contains("gemini"),
        "{stderr}"
    );
    let stderr = fails_with(gateway().env("LLM_PROVIDER", "mock").env("GATEWAY_PORT", "80a"));
    assert!(stderr.contains("GATEWAY_PORT"), "{stderr}");
}

#[test]
fn help_lists_every_variable() {
    let output = gateway().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "LLM_CA_BUNDLE",
        "LLM_CONNECT_TIMEOUT_MS",
        "LLM_FIRST_TOKEN_TIMEOUT_MS",
        "LLM_STALL_TIMEOUT_MS",
        "LLM_RETRIES",
        "LLM_RETRY_BACKOFF_MS",
        "LLM_STREAM_RESUME",
        "GATEWAY_RESPONSES_TTL_HOURS",
        "GATEWAY_RESPONSES_MAX_MB",
        "GATEWAY_REDIS_URL",
        "GATEWAY_REDIS_PREFIX",
        "GATEWAY_STORE_TIMEOUT_MS",
        "GATEWAY_LOG_BUFFER_LINES",
        "GATEWAY_HOST",
        "GATEWAY_PORT",
        "LLM_PROVIDER",
        "LLM_FALLBACKS",
        "LLM_DEFAULT_MODEL",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "OPENROUTER_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_BASE_URL",
        "OPENROUTER_BASE_URL",
        "OLLAMA_BASE_URL",
        "GATEWAY_MAX_BODY_BYTES",
        "LLM_TIMEOUT_MS",
        "GATEWAY_RATE_RPS",
        "GATEWAY_RATE_BURST",
        "LLM_DAILY_BUDGET_USD",
        "LLM_MONTHLY_BUDGET_USD",
        "LLM_PRICES_FILE",
        "LLM_UNPRICED_MODELS",
        "GATEWAY_DB",
        "CIRCUIT_FAILURE_THRESHOLD",
        "CIRCUIT_RESET_TIME_MS",
        "GATEWAY_AUTH_TOKEN",
        "CORS_ALLOWED_ORIGINS",
        "GATEWAY_MAX_INFLIGHT",
        "GATEWAY_HEADER_TIMEOUT_MS",
        "GATEWAY_BODY_TIMEOUT_MS",
        "GATEWAY_WORKERS",
        "GATEWAY_LOG_FORMAT",
        "GATEWAY_DB_SYNC",
        "GATEWAY_DATABASE_URL",
        "GATEWAY_DATABASE_SCHEMA",
        "GATEWAY_RESERVATION_TTL_MS",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable} missing from --help"
        );
    }
}

#[test]
fn text_log_lines_sent_to_a_pipe_carry_no_colour_codes() {
    let db = std::env::temp_dir().join(format!("chrysalis-text-logs-{}.db", std::process::id()));
    let mut child = gateway()
        .envs([
            ("LLM_PROVIDER", "mock"),
            ("GATEWAY_HOST", "127.0.0.1"),
            ("GATEWAY_PORT", "0"),
            ("GATEWAY_DB", db.to_str().unwrap()),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap()).lines().next();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&db);
    let first = first.unwrap().unwrap();
    assert!(first.contains("gateway listening"), "{first:?}");
    assert!(!first.contains('\u{1b}'), "escape codes in {first:?}");
}

pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) port: u16,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Sends SIGTERM, waits for the exit, and returns it with every line
    /// the gateway wrote (stdout and stderr, read to their ends).
    pub(crate) fn terminate(self) -> (std::process::ExitStatus, Vec<String>) {
        self.sigterm();
        self.exit()
    }

    /// Every line the gateway has written so far.
    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    fn sigterm(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }

    /// Waits for the exit; returns it with every line the gateway wrote.
    fn exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let exit = self.child.wait().unwrap();
        for reader in std::mem::take(&mut self.readers) {
            reader.join().unwrap();
        }
        (exit, self.logs.lock().unwrap().clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free port and waits for its "listening" log line.
pub(crate) fn start(envs: &[(&str, &str)]) -> Running {
    let mut command = gateway();
    command.env("GATEWAY_HOST", "127.0.0.1");
    let child = command
        .envs(envs.iter().copied())
        .env("GATEWAY_PORT", "0")
        .env("GATEWAY_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut running = Running {
        child,
        port: 0,
        logs: logs.clone(),
        readers: Vec::new(),
    };
    let stderr = BufReader::new(running.child.stderr.take().unwrap());
    let kept = logs.clone();
    running.readers.push(std::thread::spawn(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .for_each(|l| kept.lock().unwrap().push(l))
    }));
    let mut lines = BufReader::new(running.child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        logs.lock().unwrap().push(line.clone());
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        if line["message"] == "gateway listening" {
            let addr: std::net::SocketAddr = line["addr"].as_str().unwrap().parse().unwrap();
            // Keep reading, so the gateway's later log lines have somewhere to go.
            let rest =
                std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| logs.lock().unwrap().push(l)));
            running.readers.push(rest);
            running.port = addr.port();
            return running;
        }
    }
    panic!("the gateway never said it was listening");
}

/// An OpenAI fake: streams send one chunk and stall; whole answers come after `delay`.
fn slow_openai(runtime: &tokio::runtime::Runtime, delay: Duration) -> FakeUpstream {
    runtime.block_on(FakeUpstream::start(move |request| {
        if request.body["stream"] == true {
            let text = json!({"choices": [{"index": 0, "delta": {"content": "Hello there, "}}]});
            let text = format!("data: {text}\n\n");
            Reply::sse(&text.repeat(2), text.len()).stall_after(1)
        } else {
            let answer = json!({"model": "gpt-4o-mini", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
            Reply::json(200, answer).delay(delay)
        }
    }))
}

fn openai_env<'a>(base: &'a str, db: &'a std::path::Path, grace: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-proj-test-0123456789"),
        ("OPENAI_BASE_URL", base),
        ("GATEWAY_DB", db.to_str().unwrap()),
        ("GATEWAY_SHUTDOWN_GRACE_MS", grace),
    ]
}

fn hello() -> serde_json::Value {
    json!({"agent_id": "a", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits() {
    let db = std::env::temp_dir().join(format!("chrysalis-sigterm-{}.db", std::process::id()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = slow_openai(&runtime, Duration::from_millis(500));
    let base = format!("{}/v1", fake.url);
    let gateway = start(&openai_env(&base, &db, "30000"));
    let url = format!("http://127.0.0.1:{}/v1/chat", gateway.port);
    let in_flight = runtime.spawn(async move { reqwest::Client::new().post(url).json(&hello()).send().await });
    // The request is in flight once the upstream has it.
    runtime.block_on(fake.until_received(1));
    gateway.sigterm();
    let response = runtime
        .block_on(in_flight)
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let (exit, _) = gateway.exit();
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_file(&db);
}

#[test]
fn requests_open_past_the_grace_period_end_with_shutting_down_and_their_spend_is_kept() {
    let db = std::env::temp_dir().join(format!("chrysalis-cutoff-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = slow_openai(&runtime, Duration::from_secs(30));
    let base = format!("{}/v1", fake.url);
    let env = openai_env(&base, &db, "200");
    let gateway = start(&env);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", gateway.port);
    let client = reqwest::Client::new();
    let open = |path: &str, body: serde_json::Value| {
        let request = client.post(url(path)).json(&body);
        async move {
            let mut response = request.send().await.unwrap();
            let first = response.chunk().await.unwrap().expect("a first frame");
            (response, String::from_utf8(first.to_vec()).unwrap())
        }
    };
    let mut openai = hello();
    openai.as_object_mut().unwrap().remove("agent_id");
    openai["stream"] = json!(true);
    let (seed, openai, whole) = runtime.block_on(async {
        let seed = open("/v1/chat/stream", hello()).await;
        let openai = open("/v1/chat/completions", openai).await;
        let whole = tokio::spawn(client.post(url("/v1/chat")).json(&hello()).send());
        fake.until_received(3).await;
        gateway.sigterm();
        let rest =
            |(response, first): (reqwest::Response, String)| async move { first + &response.text().await.unwrap() };
        (rest(seed).await, rest(openai).await, whole.await.unwrap().unwrap())
    });
    let last: serde_json::Value =
        serde_json::from_str(seed.lines().rev().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "shutting_down", "{seed}");
    assert!(seed.contains("Hello there"), "the stream had started: {seed}");
    let last = openai.lines().rev().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let last: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["error"]["code"], "shutting_down", "{openai}");
    assert!(!openai.contains("[DONE]"), "SDKs raise on a stream without [DONE]");
    assert_eq!(whole.status(), 503);
    let error: serde_json::Value = runtime.block_on(whole.json()).unwrap();
    assert_eq!(error["error"]["type"], "shutting_down");

    let (exit, logs) = gateway.exit();
    assert!(exit.success(), "{exit:?}");
    let cut: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["error_type"] == "shutting_down")
        .collect();
    assert_eq!(cut.len(), 3, "one line for each request cut off: {logs:#?}");
    assert!(cut.iter().all(|l| l["status"] == 503), "{cut:?}");
    let logged: f64 = cut.iter().map(|l| l["cost_usd"].as_f64().unwrap()).sum();
    assert!(
        cut.iter().filter(|l| l["completion_tokens"].as_u64() > Some(0)).count() == 2,
        "both streams' lines carry the tokens they were charged: {cut:?}"
    );
    // The cut streams' text was charged as logged, and written before the exit.
    let again = start(&env);
    let spent = usage(&runtime, again.port)["day"]["spent_usd"].as_f64().unwrap();
    assert!(
        spent > 0.0 && (spent - logged).abs() < 1e-9,
        "ledger {spent}, logged {logged}"
    );
    drop(again);
    let _ = std::fs::remove_file(&db);
}

#[test]
fn a_stream_the_client_leaves_is_logged_499_with_what_it_was_charged() {
    let db = std::env::temp_dir().join(format!("chrysalis-left-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = slow_openai(&runtime, Duration::from_secs(30));
    let base = format!("{}/v1", fake.url);
    let env = openai_env(&base, &db, "10000");
    let gateway = start(&env);
    let url = format!("http://127.0.0.1:{}/v1/chat/stream", gateway.port);
    runtime.block_on(async {
        let mut response = reqwest::Client::new().post(url).json(&hello()).send().await.unwrap();
        let first = response.chunk().await.unwrap().expect("a first frame");
        assert!(String::from_utf8_lossy(&first).contains("Hello there"));
        // Dropping the response closes the connection mid-stream.
    });
    // The stream is gone once the gateway reads the close, well within the grace period.
    let (exit, logs) = gateway.terminate();
    assert!(exit.success(), "{exit:?}");
    let lines: Vec<serde_json::Value> = logs.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let left = lines
        .iter()
        .find(|l| l["status"] == 499)
        .unwrap_or_else(|| panic!("{logs:#?}"));
    assert!(left["completion_tokens"].as_u64() > Some(0), "{left}");
    let logged = left["cost_usd"].as_f64().unwrap();
    let again = start(&env);
    let spent = usage(&runtime, again.port)["day"]["spent_usd"].as_f64().unwrap();
    assert!(
        logged > 0.0 && (spent - logged).abs() < 1e-9,
        "ledger {spent}, logged {logged}"
    );
    drop(again);
    let _ = std::fs::remove_file(&db);
}

fn post(runtime: &tokio::runtime::Runtime, port: u16, path: &str, agent: &str) -> String {
    let body = serde_json::json!({"agent_id": agent, "messages": [{"role": "user", "content": "Hi there"}]});
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    })
}

pub(crate) fn usage(runtime: &tokio::runtime::Runtime, port: u16) -> serde_json::Value {
    runtime.block_on(async {
        let url = format!("http://127.0.0.1:{port}/v1/usage");
        reqwest::get(url).await.unwrap().json().await.unwrap()
    })
}

#[test]
fn spend_survives_sigkill_exactly() {
    let dir = std::env::temp_dir().join(format!("chrysalis-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ledger.db");
    let _ = std::fs::remove_file(&db);
    let prices = dir.join("prices.json");
    std::fs::write(
        &prices,
        r#"{"mock-1": {"input_per_mtok": 1000, "output_per_mtok": 3000}}"#,
    )
    .unwrap();
    let env = [
        ("LLM_PROVIDER", "mock"),
        ("GATEWAY_DB", db.to_str().unwrap()),
        ("LLM_PRICES_FILE", prices.to_str().unwrap()),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let mut first = start(&env);
    let mut charged = 0.0;
    for agent in ["a", "b", "a", "c", "a"] {
        let body: serde_json::Value = serde_json::from_str(&post(&runtime, first.port, "/v1/chat", agent)).unwrap();
        charged += body["cost_usd"].as_f64().unwrap();
    }
    let stream = post(&runtime, first.port, "/v1/chat/stream", "b");
    let done: serde_json::Value =
        serde_json::from_str(stream.lines().rev().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    charged += done["cost_usd"].as_f64().unwrap();
    assert!(charged > 0.0, "the prices file prices the mock");
    let before = usage(&runtime, first.port);
    assert!(
        (before["day"]["spent_usd"].as_f64().unwrap() - charged).abs() < 1e-9,
        "{before}"
    );
    first.child.kill().unwrap(); // SIGKILL: no shutdown, no flush.
    first.child.wait().unwrap();

    let second = start(&env);
    let after = usage(&runtime, second.port);
    for window in ["day", "month"] {
        for field in ["spent_usd", "by_agent", "by_model"] {
            assert_eq!(after[window][field], before[window][field], "{window}.{field}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreadable_prices_file_or_ledger_stops_start_up() {
    let stderr = fails_with(
        gateway()
            .env("LLM_PROVIDER", "mock")
            .env("LLM_PRICES_FILE", "/nonexistent/prices.json"),
    );
    assert!(stderr.contains("LLM_PRICES_FILE"), "{stderr}");
    let stderr = fails_with(
        gateway()
            .env("LLM_PROVIDER", "mock")
            .env("GATEWAY_DB", "/nonexistent/dir/ledger.db"),
    );
    assert!(stderr.contains("GATEWAY_DB"), "{stderr}");
}

#[test]
fn no_key_or_token_reaches_a_log_line_even_at_debug_level() {
    const KEY: &str = "sk-proj-SECRETKEY0123456789";
    const TOKEN: &str = "gateway-token-SECRET-42";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(crate::support::FakeUpstream::start(|request| {
        let echo = format!("Incorrect API key provided: {KEY}");
        if request.body["messages"][0]["content"] == "fail" {
            crate::support::Reply::json(401, serde_json::json!({"error": {"message": echo}}))
        } else if request.body["stream"] == true {
            let text = serde_json::json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]});
            let error = serde_json::json!({"error": {"message": echo, "type": "server_error"}});
            crate::support::Reply::sse(&format!("data: {text}\n\ndata: {error}\n\n"), 32)
        } else {
            crate::support::Reply::json(
                200,
                serde_json::json!({"model": "gpt-4o-mini", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
            )
        }
    }));
    let db = std::env::temp_dir().join(format!("chrysalis-logs-{}.db", std::process::id()));
    let base = format!("{}/v1", fake.url);
    let gateway = start(&[
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", &base),
        ("GATEWAY_DB", db.to_str().unwrap()),
        ("RUST_LOG", "debug"),
        ("GATEWAY_AUTH_TOKEN", TOKEN),
    ]);
    let url = format!("http://127.0.0.1:{}/v1/chat", gateway.port);
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for content in ["hello", "fail"] {
            let body = serde_json::json!({"agent_id": "auditor", "messages": [{"role": "user", "content": content}]});
            let response = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("x-request-id", format!("req-{content}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.headers()["x-request-id"], format!("req-{content}").as_str());
            assert!(!response.text().await.unwrap().contains(KEY));
        }
        let stream = format!("http://127.0.0.1:{}/v1/chat/stream", gateway.port);
        let body = serde_json::json!({"agent_id": "auditor", "messages": [{"role": "user", "content": "stream"}]});
        let response = client
            .post(&stream)
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let text = response.text().await.unwrap();
        assert!(
            text.contains("Incorrect API key provided") && !text.contains(KEY),
            "{text}"
        );
    });
    let (_, logs) = gateway.terminate();
    assert!(
        logs.iter().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "debug logging is on"
    );
    for line in &logs {
        assert!(
            !line.contains(KEY) && !line.contains("SECRETKEY") && !line.contains(TOKEN),
            "a secret leaked: {line}"
        );
    }
    let served = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["request_id"] == "req-hello" && l["message"] == "request served")
        .expect("a line for the request");
    assert_eq!(
        (served["agent_id"].as_str(), served["provider"].as_str()),
        (Some("auditor"), Some("openai"))
    );
    assert_eq!(
        (served["status"].as_u64(), served["completion_tokens"].as_u64()),
        (Some(200), Some(1))
    );
    assert!(served["cost_usd"].as_f64().unwrap() > 0.0 && served["duration_ms"].as_f64().is_some());
    let failed = logs
        .iter()
        .find(|l| l.contains("req-fail") && l.contains("request failed"))
        .expect("a line for the failed request");
    assert!(failed.contains("\"status\":502"), "{failed}");
}

#[test]
fn listening_beyond_loopback_without_a_token_is_warned_about() {
    // One ledger file per gateway: the ledger holds its file exclusively.
    let db = |n: u32| {
        let path = std::env::temp_dir().join(format!("chrysalis-warn-{}-{n}.db", std::process::id()));
        path.to_str().unwrap().to_owned()
    };
    let (db1, db2, db3) = (db(1), db(2), db(3));
    let open = start(&[
        ("LLM_PROVIDER", "mock"),
        ("GATEWAY_HOST", "0.0.0.0"),
        ("GATEWAY_DB", &db1),
    ]);
    let (_, logs) = open.terminate();
    assert!(
        logs.iter()
            .any(|l| l.contains("WARN") && l.contains("no GATEWAY_AUTH_TOKEN")),
        "{logs:?}"
    );
    let guarded = start(&[
        ("LLM_PROVIDER", "mock"),
        ("GATEWAY_HOST", "0.0.0.0"),
        ("GATEWAY_DB", &db2),
        ("GATEWAY_AUTH_TOKEN", "tok"),
    ]);
    let (_, logs) = guarded.terminate();
    assert!(!logs.iter().any(|l| l.contains("no GATEWAY_AUTH_TOKEN")));
    let local = start(&[("LLM_PROVIDER", "mock"), ("GATEWAY_DB", &db3)]);
    let (_, logs) = local.terminate();
    assert!(!logs.iter().any(|l| l.contains("no GATEWAY_AUTH_TOKEN")));
}

/// A proxy that refuses every CONNECT, after writing down its head.
fn refusing_connect_proxy(runtime: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = vec![0u8; 4096];
            let n = socket.read(&mut head).await.unwrap_or(0);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head[..n]).into_owned());
            let _ = socket
                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    (url, heads)
}

#[test]
fn upstream_calls_take_the_proxies_the_environment_names() {
    let db = std::env::temp_dir().join(format!("chrysalis-proxy-{}.db", std::process::id()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = json!({"model": "gpt-4o-mini", "choices": [{"message": {"content": "via proxy"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}});
    let proxy = runtime.block_on(FakeUpstream::always(Reply::json(200, answer.clone())));
    let direct = runtime.block_on(FakeUpstream::always(Reply::json(200, answer)));
    let ask = |gateway: &Running| {
        let url = format!("http://127.0.0.1:{}/v1/chat", gateway.port);
        runtime.block_on(async { reqwest::Client::new().post(url).json(&hello()).send().await.unwrap() })
    };

    // HTTP_PROXY: a host nobody can resolve is reached through the proxy, in absolute form.
    let base = "http://api.openai.test/v1";
    let mut env = openai_env(base, &db, "1000");
    env.push(("HTTP_PROXY", &proxy.url));
    let gateway = start(&env);
    assert_eq!(ask(&gateway).status(), 200);
    drop(gateway);
    let forwarded = proxy.last();
    assert_eq!(forwarded.path, "http://api.openai.test/v1/chat/completions");
    assert_eq!(
        forwarded.header("authorization"),
        Some("Bearer sk-proj-test-0123456789")
    );

    // NO_PROXY: a listed host is called directly, though the proxy is dead.
    let base = format!("{}/v1", direct.url);
    let mut env = openai_env(&base, &db, "1000");
    env.extend([
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("NO_PROXY", "127.0.0.1,localhost"),
    ]);
    let gateway = start(&env);
    assert_eq!(ask(&gateway).status(), 200);
    drop(gateway);
    assert_eq!(direct.requests().len(), 1);

    // HTTPS_PROXY: an https upstream is tunnelled with CONNECT, which carries no key.
    let (tunnel, heads) = refusing_connect_proxy(&runtime);
    let mut env = openai_env("https://api.openai.test/v1", &db, "1000");
    env.push(("HTTPS_PROXY", &tunnel));
    let gateway = start(&env);
    let refused = ask(&gateway);
    assert_eq!(refused.status(), 502);
    let (_, logs) = gateway.terminate();
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads[0].starts_with("CONNECT api.openai.test:443 HTTP/1.1"),
        "{heads:?}"
    );
    assert!(!heads[0].contains("sk-proj"), "{heads:?}");
    assert!(logs.iter().all(|l| !l.contains("sk-proj-test")), "{logs:#?}");
    let _ = std::fs::remove_file(&db);
}

#[test]
fn an_unreadable_or_malformed_ca_bundle_stops_start_up() {
    let bad = std::env::temp_dir().join(format!("chrysalis-ca-{}.pem", std::process::id()));
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for bundle in [bad.to_str().unwrap(), "/nonexistent/ca.pem"] {
        let stderr = fails_with(gateway().args(["--llm-provider", "mock"]).env("LLM_CA_BUNDLE", bundle));
        assert!(stderr.contains("LLM_CA_BUNDLE"), "{stderr}");
    }
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn when_stdout_falls_behind_lines_are_dropped_and_counted_in_a_line_of_the_same_format() {
    let db = std::env::temp_dir().join(format!("chrysalis-drops-{}.db", std::process::id()));
    let mut child = gateway()
        .envs([
            ("LLM_PROVIDER", "mock"),
            ("GATEWAY_HOST", "127.0.0.1"),
            ("GATEWAY_PORT", "0"),
            ("GATEWAY_DB", db.to_str().unwrap()),
            ("GATEWAY_LOG_FORMAT", "json"),
            ("GATEWAY_LOG_BUFFER_LINES", "4"),
            ("GATEWAY_RATE_RPS", "100000"),
            ("GATEWAY_RATE_BURST", "100000"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Nobody reads stdout for now: the pipe fills, then the buffer, then lines are dropped.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("gateway listening") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the gateway said it was listening"
        );
    }
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    let port = line["addr"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        // A line each, far more than the pipe (64 KiB) and the buffer hold.
        for _ in 0..1500 {
            let url = format!("http://127.0.0.1:{port}/v1/chat");
            let body = json!({"agent_id": "a", "messages": [{"role": "user", "content": "Hi"}]});
            assert_eq!(client.post(url).json(&body).send().await.unwrap().status(), 200);
        }
    });
    // Now read: once stdout keeps up, the notice gets through.
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(|l| drop(lines.send(l))));
    let notice = loop {
        let line = received
            .recv_timeout(Duration::from_secs(10))
            .expect("a notice of the dropped lines");
        let line: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if line["message"] == "log lines dropped: stdout is not keeping up" {
            break line;
        }
    };
    assert_eq!(notice["level"], "WARN");
    assert!(notice["dropped"].as_u64() > Some(0), "{notice}");
    let _ = child.kill();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&db);
}

#[test]
fn what_layers_log_during_a_call_carries_its_request_id_in_the_span() {
    let db = std::env::temp_dir().join(format!("chrysalis-span-{}.db", std::process::id()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let down = runtime.block_on(FakeUpstream::always(Reply::json(
        503,
        json!({"error": {"message": "overloaded"}}),
    )));
    let base = format!("{}/v1", down.url);
    let mut env = openai_env(&base, &db, "1000");
    env.push(("LLM_FALLBACKS", "mock"));
    let gateway = start(&env);
    let url = format!("http://127.0.0.1:{}/v1/chat", gateway.port);
    let response = runtime.block_on(async {
        let request = reqwest::Client::new().post(url).header("x-request-id", "req-span-7");
        request.json(&hello()).send().await.unwrap()
    });
    assert_eq!(response.status(), 200, "the mock served it");
    let (_, logs) = gateway.terminate();
    let _ = std::fs::remove_file(&db);
    let warned = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "provider failed; trying the next")
        .unwrap_or_else(|| panic!("{logs:#?}"));
    assert_eq!(warned["span"]["name"], "request", "{warned}");
    assert_eq!(warned["span"]["request_id"], "req-span-7", "{warned}");
    assert_eq!(warned["span"]["route"], "/v1/chat", "{warned}");
}
