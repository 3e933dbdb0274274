//! The HTTP edge over real HTTP: bearer auth, CORS, the body limit, malformed
//! and slow clients, the in-flight cap. After each abuse the gateway still serves.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn still_serves(gateway: &Gateway, token: Option<&str>) {
    let mut request = gateway.post("/v1/chat").json(&hello(None));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    assert_eq!(request.send().await.unwrap().status(), 200, "the gateway still serves");
}

#[tokio::test]
async fn bearer_tokens_guard_v1_and_can_be_rotated() {
    let gateway = Gateway::start(&["--llm-provider", "mock", "--gateway-auth-token", "tok-new, tok-old"]).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic dG9rLW5ldw=="),
        Some("Bearer tok-ne"),
    ] {
        let mut request = gateway.post("/v1/chat").json(&hello(None));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "unauthorized");
        assert!(!body.to_string().contains("tok-"), "no token in the answer");
    }
    let usage = gateway.get("/v1/usage").send().await.unwrap();
    assert_eq!(usage.status(), 401);
    for token in ["tok-new", "tok-old"] {
        still_serves(&gateway, Some(token)).await;
    }
    assert_eq!(gateway.get("/healthz").send().await.unwrap().status(), 200);
    assert_eq!(gateway.get("/metrics").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn cors_preflights_pass_without_a_token_for_allowed_origins_only() {
    let gateway = Gateway::start(&["--llm-provider", "mock", "--gateway-auth-token", "tok"]).await;
    let preflight = |origin: &'static str| {
        gateway
            .client()
            .request(reqwest::Method::OPTIONS, format!("{}/v1/chat", gateway.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-agent-id",
            )
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(headers["access-control-max-age"], "600");
    let allow_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allow_headers.contains("authorization") && allow_headers.contains("x-agent-id"),
        "{allow_headers}"
    );

    // An Anthropic or OpenAI SDK in a page names its own headers.
    let sdk = gateway
        .client()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/messages", gateway.url))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "x-api-key,anthropic-version,anthropic-dangerous-direct-browser-access,x-stainless-lang",
        )
        .send()
        .await
        .unwrap();
    assert!(sdk.status().is_success(), "{}", sdk.status());
    let allow_headers = sdk.headers()["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allow_headers.contains("x-api-key") && allow_headers.contains("x-stainless-lang"),
        "{allow_headers}"
    );

    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    let response = gateway
        .post("/v1/chat")
        .header("origin", "http://localhost:3000")
        .bearer_auth("tok")
        .json(&hello(None))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let exposed = response.headers()["access-control-expose-headers"].to_str().unwrap();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("retry-after"),
        "{exposed}"
    );
}

/// Sends raw bytes and reads what comes back until the server closes or `wait` passes.
async fn raw(gateway: &Gateway, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut socket = TcpStream::connect(gateway.url.trim_start_matches("http://"))
        .await
        .unwrap();
    socket.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(wait, socket.read_to_end(&mut answer))
        .await
        .is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[tokio::test]
async fn a_20_mib_body_is_refused_with_413_before_it_is_read() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    let head = "POST /v1/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20971520\r\n";
    // A careful client waits for 100-continue; a careless one starts sending.
    for (expect, body) in [("expect: 100-continue\r\n\r\n", 0), ("\r\n", 4096)] {
        let mut bytes = format!("{head}{expect}").into_bytes();
        bytes.extend(std::iter::repeat_n(b'{', body));
        let (answer, _) = raw(&gateway, &bytes, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
    // A chunked body with no length is cut off at the limit too. The answer is
    // read while the body is still being sent: the server stops reading at the limit.
    let socket = TcpStream::connect(gateway.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut reader, mut writer) = socket.into_split();
    let sender = tokio::spawn(async move {
        let head =
            "POST /v1/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        writer.write_all(head.as_bytes()).await?;
        let mut piece = b"100000\r\n".to_vec();
        piece.extend(std::iter::repeat_n(b' ', 1 << 20));
        piece.extend(b"\r\n");
        for _ in 0..20 {
            writer.write_all(&piece).await?;
        }
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    sender.abort();
    still_serves(&gateway, None).await;
}

#[tokio::test]
async fn an_oversized_uri_or_head_gets_a_json_414_or_431_and_the_gateway_still_serves() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    let long_uri = format!("/healthz?{}", "q".repeat(9 * 1024));
    let response = gateway.get(&long_uri).send().await.unwrap();
    assert_eq!(response.status(), 414);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "uri_too_long", "{error}");

    let big = "v".repeat(8 * 1024);
    let mut many_bytes = gateway.get("/healthz");
    for i in 0..9 {
        many_bytes = many_bytes.header(format!("x-big-{i}"), &big);
    }
    let mut many_fields = gateway.get("/healthz");
    for i in 0..150 {
        many_fields = many_fields.header(format!("x-field-{i}"), "v");
    }
    for request in [many_bytes, many_fields] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 431);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "headers_too_large", "{error}");
    }
    still_serves(&gateway, None).await;
}

#[tokio::test]
async fn malformed_headers_get_a_400_and_the_gateway_still_serves() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    for garbage in [
        &b"POST /v1/chat HTTP/1.1\r\nthis header has no colon\r\n\r\n"[..],
        b"GARBAGE\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nhost: x\r\ncontent-length: nope\r\n\r\n",
    ] {
        let (answer, closed) = raw(&gateway, garbage, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(closed, "the bad connection is closed");
    }
    still_serves(&gateway, None).await;
}

#[tokio::test]
async fn a_slowloris_client_and_an_idle_connection_are_cut_off() {
    let gateway = Gateway::start(&["--llm-provider", "mock", "--gateway-header-timeout-ms", "500"]).await;
    let mut slow = TcpStream::connect(gateway.url.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(b"POST /v1/chat HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut cut = false;
    // One header byte every 100 ms, for at most 5 s.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"x").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
            cut = n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408");
            if cut {
                break;
            }
        }
    }
    // The 500 ms header timeout runs from the first byte, not the last: the
    // client is cut off before its 5 s of trickling are over.
    assert!(cut, "a trickling client is cut off");

    let (_, closed) = raw(&gateway, b"", Duration::from_secs(3)).await;
    assert!(closed, "an idle connection is closed");
    still_serves(&gateway, None).await;
}

/// A gateway whose OpenAI upstream starts every stream and then stalls.
async fn stalled_streams(extra: &[&str]) -> (Gateway, FakeUpstream) {
    let first = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    let fake = FakeUpstream::always(Reply::sse(&format!("{first}{first}"), first.len()).stall_after(1)).await;
    (Gateway::openai(&fake, extra).await, fake)
}

/// Opens a stream and waits for its first frame, so it is surely in flight.
async fn open_stream(gateway: &Gateway) -> reqwest::Response {
    let mut response = gateway
        .post("/v1/chat/stream")
        .json(&hello(Some("gpt-4o-mini")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().expect("a first frame");
    assert!(String::from_utf8_lossy(&first).contains("Hi"));
    response
}

#[tokio::test]
async fn past_the_in_flight_cap_chat_gets_503_at_once_and_the_rest_still_answers() {
    let (gateway, _fake) = stalled_streams(&["--gateway-max-inflight", "2"]).await;
    let open = [open_stream(&gateway).await, open_stream(&gateway).await];
    // Both streams stay open (their upstream stalls), so the 503 below came at once, not after a wait.
    for path in ["/v1/chat", "/v1/chat/stream"] {
        let refused = gateway.post(path).json(&hello(None)).send().await.unwrap();
        assert_eq!(refused.status(), 503, "{path}");
        assert_eq!(refused.headers()["retry-after"], "1");
    }
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]});
    let refused = gateway.post("/v1/chat/completions").json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    // An orchestrator's probes and a scraper are never shed.
    for path in ["/healthz", "/metrics", "/v1/usage", "/v1/providers", "/v1/models"] {
        assert_eq!(gateway.get(path).send().await.unwrap().status(), 200, "{path}");
    }
    drop(open);
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_frees_its_slot() {
    let gateway = Gateway::start(&[
        "--llm-provider",
        "mock",
        "--gateway-max-inflight",
        "1",
        "--gateway-body-timeout-ms",
        "300",
    ])
    .await;
    let head = "POST /v1/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    let (answer, closed) = raw(
        &gateway,
        format!("{head}{{\"agent_id\"").as_bytes(),
        Duration::from_secs(20),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        closed,
        "the connection is closed: the rest of its body cannot be framed"
    );
    still_serves(&gateway, None).await;
}

#[tokio::test]
async fn chat_routes_take_json_only_so_a_web_page_cannot_post_without_a_preflight() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    let body = serde_json::to_string(&hello(None)).unwrap();
    let openai = json!({"model": "mock-1", "messages": [{"role": "user", "content": "Hi"}]}).to_string();
    for (path, body) in [
        ("/v1/chat", &body),
        ("/v1/chat/stream", &body),
        ("/v1/chat/completions", &openai),
    ] {
        for content_type in [
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let mut request = gateway
                .post(path)
                .header("origin", "https://evil.example")
                .body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 415, "{path} {content_type:?}");
            let error: Value = response.json().await.unwrap();
            assert!(
                error["error"]["message"].as_str().unwrap().contains("application/json"),
                "{error}"
            );
        }
        let json = gateway
            .post(path)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.clone());
        assert_eq!(json.send().await.unwrap().status(), 200, "{path}");
    }
    let scrape = gateway.get("/metrics").send().await.unwrap().text().await.unwrap();
    let served = r#"gateway_requests_total{provider="mock",model="mock-1",outcome="success"} "#;
    let count = scrape.lines().find_map(|line| line.strip_prefix(served));
    assert_eq!(
        count,
        Some("3"),
        "only the JSON posts reached the chat stack:\n{scrape}"
    );
}

#[tokio::test]
async fn absurd_names_and_a_zero_cap_are_400s_before_any_work_on_both_routes() {
    let gateway = Gateway::start(&["--llm-provider", "mock", "--gateway-max-body-bytes", "4000000"]).await;
    let huge = "m".repeat(1 << 20);
    let cases = [
        (
            json!({"model": huge, "messages": [{"role": "user", "content": "Hi"}]}),
            "model",
        ),
        (
            json!({"user": "a".repeat(300), "messages": [{"role": "user", "content": "Hi"}]}),
            "agent_id",
        ),
        (
            json!({"model": "mock-1", "max_tokens": 0, "messages": [{"role": "user", "content": "Hi"}]}),
            "max_tokens",
        ),
    ];
    for (body, param) in cases {
        let response = gateway.post("/v1/chat/completions").json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{param}");
        let mut ours = body.clone();
        let ours = ours.as_object_mut().unwrap();
        let agent = ours.remove("user").unwrap_or_else(|| "agent".into());
        ours.insert("agent_id".into(), agent);
        let (status, error) = gateway.chat(Value::Object(ours.clone())).await;
        assert_eq!(status, 400, "{param}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(param), "{error}");
        assert!(error.to_string().len() < 1000, "the error does not echo the name");
    }
    let scrape = gateway.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(scrape.len() < 64 * 1024, "a scrape of {} bytes", scrape.len());
}
