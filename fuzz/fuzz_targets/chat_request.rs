//! Chat request bodies on every chat route, through the whole router and
//! chat stack (the mock serves): a served call or a 4xx, never a panic or a 5xx.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use chrysalis_gateway::config::Config;
use chrysalis_gateway::stack;
use clap::Parser;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const ROUTES: [&str; 6] = [
    "/v1/chat",
    "/v1/chat/stream",
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
];

fn gateway() -> &'static (tokio::runtime::Runtime, Router) {
    static GATEWAY: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let db = std::env::temp_dir().join(format!("chrysalis-fuzz-{}.db", std::process::id()));
        let db = db.to_str().unwrap();
        let args = ["gateway", "--llm-provider", "mock", "--gateway-db", db];
        let rate = ["--gateway-rate-rps", "1000000000", "--gateway-rate-burst", "1000000000"];
        let config = Config::try_parse_from(args.into_iter().chain(rate)).unwrap();
        let app = runtime.block_on(async { stack::app(&config) }).unwrap();
        (runtime, app)
    })
}

fuzz_target!(|input: (u8, &[u8])| {
    let (route, body) = input;
    let (runtime, app) = gateway();
    let request = Request::post(ROUTES[usize::from(route) % ROUTES.len()])
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let status = runtime.block_on(async {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        response.into_body().collect().await.unwrap();
        status
    });
    assert!(status.is_success() || status.is_client_error(), "{status}");
});
