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
    // A chunked body with no length is cut off at the limit too.
    let big = vec![b' '; 20 * 1024 * 1024];
    let response = gateway
        .post("/v1/chat")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            big.chunks(1 << 20)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        )));
    if let Ok(response) = response.send().await {
        assert_eq!(response.status(), 413);
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
        assert!(answer.starts_with("HTTP/1.1 400") || answer.is_empty(), "{answer}");
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
    let started = tokio::time::Instant::now();
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
    assert!(cut, "a trickling client is cut off");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let (_, closed) = raw(&gateway, b"", Duration::from_secs(3)).await;
    assert!(closed, "an idle connection is closed");
    still_serves(&gateway, None).await;
}

#[tokio::test]
async fn past_the_in_flight_cap_requests_get_503_at_once() {
    let gateway = Gateway::start(&[
        "--llm-provider",
        "mock",
        "--mock-latency-ms",
        "800",
        "--gateway-max-inflight",
        "2",
    ])
    .await;
    let slow = || gateway.post("/v1/chat").json(&hello(None)).send();
    let (a, b) = (slow(), slow());
    let third = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = tokio::time::Instant::now();
        let response = slow().await.unwrap();
        (response, started.elapsed())
    };
    let (a, b, (third, waited)) = tokio::join!(a, b, third);
    assert_eq!((a.unwrap().status().as_u16(), b.unwrap().status().as_u16()), (200, 200));
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "1");
    assert!(
        waited < Duration::from_millis(500),
        "refused at once, not queued: {waited:?}"
    );
    still_serves(&gateway, None).await;
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
