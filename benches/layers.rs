//! The cost of each layer alone, of the whole chat stack, and of the stream
//! wrappers per chunk: `cargo bench --bench layers`.

use std::convert::Infallible;
use std::future::ready;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrysalis_gateway::config::Config;
use chrysalis_gateway::stack;
use chrysalis_middleware::auth::BearerAuthLayer;
use chrysalis_middleware::budget::{BudgetConfig, BudgetLayer, MemoryLedger};
use chrysalis_middleware::circuit_breaker::CircuitBreakerLayer;
use chrysalis_middleware::failover::{Failover, Target};
use chrysalis_middleware::metrics::{Metrics, ProviderMetricsLayer, RequestMetricsLayer};
use chrysalis_middleware::rate_limit::RateLimitLayer;
use chrysalis_middleware::timeout::TimeoutLayer;
use chrysalis_services::mock::{Mock, MockConfig};
use chrysalis_services::pricing::PriceTable;
use chrysalis_services::{
    ChatRequest, ChatResponse, ChatStream, Chunk, Completion, FinishReason, Message, ProviderError, Role, StreamEnd,
    Usage,
};
use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::StreamExt;
use prometheus_client::registry::Registry;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

/// A provider that answers at once: the baseline every layer is measured over.
#[derive(Clone)]
struct Answering(Arc<Completion>);

impl Service<ChatRequest> for Answering {
    type Response = ChatResponse;
    type Error = ProviderError;
    type Future = std::future::Ready<Result<ChatResponse, ProviderError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ChatRequest) -> Self::Future {
        ready(Ok(ChatResponse::Complete((*self.0).clone())))
    }
}

fn ready_provider() -> Answering {
    Answering(Arc::new(Completion {
        content: "Hello!".into(),
        tool_calls: Vec::new(),
        provider: "ready",
        model: "gpt-4o-mini".into(),
        usage: Usage::new(10, 5),
        cost_usd: 0.0,
        finish_reason: Some(FinishReason::Stop),
        meta: Default::default(),
    }))
}

fn request() -> ChatRequest {
    let mut request = ChatRequest::new("bench", vec![Message::new(Role::User, "Hello, how are you?")]);
    request.model = Some("gpt-4o-mini".into());
    request.max_tokens = Some(64);
    request
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench<S>(c: &mut Criterion, name: &str, service: S)
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone,
    S::Error: std::fmt::Debug,
{
    bench_request(c, name, service, request());
}

fn bench_request<S>(c: &mut Criterion, name: &str, service: S, request: ChatRequest)
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone,
    S::Error: std::fmt::Debug,
{
    let rt = runtime();
    c.bench_function(name, |b| {
        b.to_async(&rt).iter(|| {
            let service = service.clone();
            let request = request.clone();
            async move { service.oneshot(request).await.unwrap() }
        })
    });
}

fn layers(c: &mut Criterion) {
    let burst = NonZeroU32::new(u32::MAX).unwrap();
    bench(c, "layer/none (the ready provider alone)", ready_provider());
    bench(
        c,
        "layer/rate_limit",
        RateLimitLayer::global(1e9, burst).unwrap().layer(ready_provider()),
    );
    bench(
        c,
        "layer/circuit_breaker",
        CircuitBreakerLayer::new("p").layer(ready_provider()),
    );
    bench(
        c,
        "layer/timeout",
        TimeoutLayer::new(Duration::from_secs(60), Duration::from_secs(60)).layer(ready_provider()),
    );
    let config = BudgetConfig::new(1e9, 1e9, Arc::new(PriceTable::builtin())).unwrap();
    let budget = BudgetLayer::new(config, Arc::new(MemoryLedger::default())).unwrap();
    bench(c, "layer/budget", budget.layer(ready_provider()));
    let boxed = BoxCloneSyncService::new(ready_provider().map_err(BoxError::from));
    bench(
        c,
        "layer/failover (one provider)",
        Failover::new(vec![Target::primary("p", boxed)]),
    );
    let metrics = Metrics::register(&mut Registry::default(), ["gpt-4o-mini"]);
    bench(
        c,
        "layer/metrics (request)",
        RequestMetricsLayer::new(&metrics).layer(ready_provider()),
    );
    bench(
        c,
        "layer/metrics (provider)",
        ProviderMetricsLayer::new(&metrics, "p").layer(ready_provider()),
    );

    let rt = runtime();
    let auth = BearerAuthLayer::new(["token-a", "token-b"])
        .unwrap()
        .layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(String::new()))
        }));
    c.bench_function("layer/auth (valid token)", |b| {
        b.to_async(&rt).iter(|| {
            let request = http::Request::builder()
                .uri("/v1/chat")
                .header("authorization", "Bearer token-b");
            auth.clone().oneshot(request.body(()).unwrap())
        })
    });
}

fn whole_stack(c: &mut Criterion) {
    let db = std::env::temp_dir().join(format!("chrysalis-bench-{}.db", std::process::id()));
    let args = [
        "gateway",
        "--llm-provider",
        "mock",
        "--gateway-rate-rps",
        "1e9",
        "--gateway-rate-burst",
        "4000000000",
    ];
    let mut config = Config::try_parse_from(args).unwrap();
    config.gateway_db = db;
    let chat = stack::chat(&config).unwrap();
    bench(c, "stack/mock provider alone", Mock::new(MockConfig::default()));
    // A priced model: the call's spend is committed to the ledger before it answers.
    bench(
        c,
        "stack/whole chat stack over the mock, priced (durable ledger write)",
        chat.service.clone(),
    );
    let mut free = request();
    free.model = Some("mock-1".into());
    bench_request(
        c,
        "stack/whole chat stack over the mock, free model",
        chat.service,
        free,
    );
}

/// A stream of `n` deltas and its end, known in advance.
fn chunks(n: usize) -> ChatStream {
    let deltas = (0..n).map(|_| Ok(Chunk::Delta("word ".into())));
    let end = StreamEnd {
        usage: Usage::default(),
        cost_usd: 0.0,
        finish_reason: None,
        resumed_by: None,
    };
    ChatStream::new(
        "p",
        "gpt-4o-mini".into(),
        futures_util::stream::iter(deltas.chain([Ok(Chunk::End(end))])),
    )
}

#[derive(Clone)]
struct Streaming;

impl Service<ChatRequest> for Streaming {
    type Response = ChatResponse;
    type Error = ProviderError;
    type Future = std::future::Ready<Result<ChatResponse, ProviderError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ChatRequest) -> Self::Future {
        ready(Ok(ChatResponse::Stream(chunks(1000))))
    }
}

fn streams(c: &mut Criterion) {
    let rt = runtime();
    let metrics = Metrics::register(&mut Registry::default(), ["gpt-4o-mini"]);
    let wrapped = ServiceBuilder::new()
        .layer(RequestMetricsLayer::new(&metrics))
        .layer(ProviderMetricsLayer::new(&metrics, "p"))
        .layer(CircuitBreakerLayer::new("p"))
        .layer(TimeoutLayer::new(Duration::from_secs(60), Duration::from_secs(60)))
        .service(Streaming);
    let mut group = c.benchmark_group("stream/1000 chunks");
    group.bench_function("raw", |b| b.to_async(&rt).iter(|| async { chunks(1000).count().await }));
    group.bench_function("through metrics, breaker and timeout wrappers", |b| {
        b.to_async(&rt).iter(|| {
            let service = wrapped.clone();
            async move {
                let ChatResponse::Stream(stream) = service.oneshot(request()).await.unwrap() else {
                    unreachable!()
                };
                stream.count().await
            }
        })
    });
    group.finish();
}

criterion_group!(benches, layers, whole_stack, streams);
criterion_main!(benches);
