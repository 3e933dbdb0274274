//! The real router, served over real HTTP on 127.0.0.1.

use chrysalis_gateway::config::Config;
use chrysalis_gateway::{server, stack};
use clap::Parser;
use reqwest::StatusCode;
use serde_json::Value;

/// The OpenAI key the tests configure.
pub const OPENAI_KEY: &str = "sk-test-openai-0123456789";
/// The Anthropic key the tests configure.
pub const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789";

/// The gateway's real server (its acceptor and worker threads, as the binary
/// runs them) on a free port; it shuts down when this is dropped.
pub struct Gateway {
    pub url: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// What a streaming call returned: SSE frames, or a plain JSON error.
#[derive(Debug)]
pub enum Streamed {
    Frames(Vec<Value>),
    Error(StatusCode, Value),
}

impl Streamed {
    pub fn frames(self) -> Vec<Value> {
        match self {
            Self::Frames(frames) => frames,
            Self::Error(status, body) => panic!("expected frames, got {status}: {body}"),
        }
    }

    /// The text of all delta frames.
    pub fn text(frames: &[Value]) -> String {
        frames.iter().filter_map(|f| f["content"].as_str()).collect()
    }
}

impl Gateway {
    pub async fn start(args: &[&str]) -> Self {
        let db = temp_db();
        let mut args: Vec<&str> = args.to_vec();
        if !args.contains(&"--gateway-db") {
            args.extend(["--gateway-db", db.to_str().unwrap()]);
        }
        let config = Config::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))
            .expect("test configuration parses");
        config.validate().expect("test configuration is valid");
        let app = stack::app(&config).expect("the gateway starts");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let shutdown = move || async move {
                let _ = stopped.await;
            };
            server::serve(listener, config, app, shutdown).expect("the server runs");
        });
        Self {
            url,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    /// A gateway whose primary is OpenAI at `fake`, with `extra` flags.
    pub async fn openai(fake: &super::FakeUpstream, extra: &[&str]) -> Self {
        let base = format!("{}/v1", fake.url);
        let mut args = vec![
            "--llm-provider",
            "openai",
            "--openai-api-key",
            OPENAI_KEY,
            "--openai-base-url",
            &base,
        ];
        args.extend_from_slice(extra);
        Self::start(&args).await
    }

    /// A gateway whose primary is OpenAI at `openai`, falling back to
    /// Anthropic (`model` pinned) at `anthropic`, with `extra` flags.
    pub async fn openai_then_anthropic(
        openai: &super::FakeUpstream,
        anthropic: &super::FakeUpstream,
        model: &str,
        extra: &[&str],
    ) -> Self {
        let fallback = format!("anthropic:{model}");
        let mut args = vec![
            "--llm-fallbacks",
            &fallback,
            "--anthropic-api-key",
            ANTHROPIC_KEY,
            "--anthropic-base-url",
            &anthropic.url,
        ];
        args.extend_from_slice(extra);
        Self::openai(openai, &args).await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    pub async fn chat(&self, body: Value) -> (StatusCode, Value) {
        let response = self.post("/v1/chat").json(&body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    pub async fn stream(&self, body: Value) -> Streamed {
        let response = self.post("/v1/chat/stream").json(&body).send().await.unwrap();
        let status = response.status();
        let is_sse = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !is_sse {
            return Streamed::Error(status, response.json().await.unwrap());
        }
        assert_eq!(status, StatusCode::OK);
        let text = response.text().await.unwrap();
        Streamed::Frames(sse_data(&text).map(|d| serde_json::from_str(d).unwrap()).collect())
    }
}

/// A fresh ledger file for one test.
pub fn temp_db() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("chrysalis-e2e-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|l| l.strip_prefix("data: "))
}

/// A request body with a system and a user message.
pub fn hello(model: Option<&str>) -> Value {
    let mut body = serde_json::json!({
        "agent_id": "planner",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Hello"}
        ],
        "max_tokens": 256
    });
    if let Some(model) = model {
        body["model"] = model.into();
    }
    body
}

/// Asserts `frames` is deltas spelling `text`, then a done frame with usage.
pub fn assert_whole(frames: &[Value], text: &str, prompt: u64, completion: u64) -> f64 {
    assert_eq!(Streamed::text(frames), text, "{frames:?}");
    let last = frames.last().unwrap();
    assert_eq!(last["done"], true, "{last}");
    assert!(last.get("error").is_none(), "{last}");
    assert_eq!(last["usage"]["prompt_tokens"], prompt, "{last}");
    assert_eq!(last["usage"]["completion_tokens"], completion, "{last}");
    assert_eq!(last["usage"]["total_tokens"], prompt + completion, "{last}");
    last["cost_usd"].as_f64().unwrap()
}

/// Asserts `frames` is deltas spelling `text`, then an error frame; returns its message.
pub fn assert_cut(frames: &[Value], text: &str) -> String {
    assert_eq!(Streamed::text(frames), text, "{frames:?}");
    let last = frames.last().unwrap();
    assert_eq!(last["done"], true, "{last}");
    assert!(last.get("usage").is_none(), "a cut stream must not look whole: {last}");
    assert_eq!(last["error"]["type"], "upstream_error", "{last}");
    last["error"]["message"].as_str().unwrap().to_owned()
}

pub fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-12, "{actual} != {expected}");
}
