//! Every layer under backpressure (`tower-test`): it is ready only when its
//! inner service is, passes on a readiness error, and takes nothing (a rate
//! token, a budget reservation, a circuit probe) while it waits. Failover
//! waits for a provider that is not ready yet, and moves on from one whose
//! readiness fails.

use std::sync::Arc;
use std::time::Duration;

use chrysalis_services::pricing::PriceTable;
use chrysalis_services::{ChatRequest, ChatResponse};
use prometheus_client::registry::Registry;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_test::mock;

use crate::budget::{BudgetConfig, BudgetLayer, MemoryLedger};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::failover::{Failover, Target};
use crate::metrics::{Metrics, ProviderMetricsLayer, RequestMetricsLayer};
use crate::rate_limit::RateLimitLayer;
use crate::test_support::*;
use crate::timeout::TimeoutLayer;

type Inner = mock::Mock<ChatRequest, ChatResponse>;
type Handle = mock::Handle<ChatRequest, ChatResponse>;

/// Readiness follows the inner service's: pending, then ready, then its error.
fn follows_readiness<L>(name: &str, layer: L)
where
    L: Layer<Inner>,
    L::Service: Service<ChatRequest, Error = BoxError>,
{
    let (mut service, mut handle) = mock::spawn_layer::<ChatRequest, ChatResponse, _>(layer);
    handle.allow(0);
    assert_pending!(service.poll_ready(), "{name} is ready while its inner service is not");
    handle.allow(1);
    assert_ready_ok!(service.poll_ready(), "{name} is not ready once its inner service is");
    handle.send_error(status_error("p", 503));
    let error = assert_ready_err!(service.poll_ready(), "{name} hides a readiness error");
    assert!(error.to_string().contains("503"), "{name}: {error}");
}

fn budget() -> BudgetLayer {
    let config = BudgetConfig::new(50.0, 500.0, Arc::new(PriceTable::builtin())).unwrap();
    BudgetLayer::new(config, Arc::new(MemoryLedger::default())).unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_chat_layer_is_ready_only_when_its_inner_service_is() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, []);
    follows_readiness(
        "rate limit",
        RateLimitLayer::global(1.0, 1.try_into().unwrap()).unwrap(),
    );
    follows_readiness("budget", budget());
    follows_readiness("circuit breaker", CircuitBreakerLayer::new("p"));
    follows_readiness(
        "timeout",
        TimeoutLayer::new(Duration::from_secs(1), Duration::from_secs(1)),
    );
    follows_readiness("request metrics", RequestMetricsLayer::new(&metrics));
    follows_readiness("provider metrics", ProviderMetricsLayer::new(&metrics, "p"));
}

#[tokio::test(start_paused = true)]
async fn waiting_for_readiness_takes_no_rate_token_and_holds_no_budget() {
    let (mut limited, mut handle) =
        mock::spawn_layer::<ChatRequest, ChatResponse, _>(RateLimitLayer::global(1.0, 1.try_into().unwrap()).unwrap());
    handle.allow(0);
    for _ in 0..5 {
        assert_pending!(limited.poll_ready());
    }
    handle.allow(1);
    assert_ready_ok!(limited.poll_ready());
    let call = limited.call(request());
    let (_, reply) = handle.next_request().await.expect("the one token was still there");
    reply.send_response(ChatResponse::Complete(completion("p")));
    assert!(call.await.is_ok());

    let layer = budget();
    let spend = layer.handle();
    let (mut budgeted, mut handle) = mock::spawn_layer::<ChatRequest, ChatResponse, _>(layer);
    handle.allow(0);
    assert_pending!(budgeted.poll_ready());
    assert_eq!(spend.report().unwrap().day.reserved_usd, 0.0);
}

fn target(name: &'static str, primary: bool) -> (Target<Inner>, Handle) {
    let (service, handle) = mock::pair();
    let target = match primary {
        true => Target::primary(name, service),
        false => Target::fallback(name, None, service),
    };
    (target, handle)
}

#[tokio::test(start_paused = true)]
async fn failover_moves_on_from_a_provider_whose_readiness_fails() {
    let (a, mut a_handle) = target("a", true);
    let (b, mut b_handle) = target("b", false);
    let failover = Failover::new(vec![a, b]);
    a_handle.send_error(status_error("a", 503));
    let call = tokio::spawn(failover.clone().oneshot(request()));
    let (_, reply) = b_handle.next_request().await.expect("the fallback is called");
    reply.send_response(ChatResponse::Complete(completion("b")));
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.provider(), "b");
    let stats = failover.stats();
    assert_eq!((stats[0].failovers_from, stats[1].failovers_to), (1, 1));
    assert!(a_handle.poll_request().is_pending(), "the primary was never called");
}

#[tokio::test(start_paused = true)]
async fn failover_waits_for_a_provider_that_is_not_ready_yet() {
    let (a, mut a_handle) = target("a", true);
    let (b, mut b_handle) = target("b", false);
    let failover = Failover::new(vec![a, b]);
    a_handle.allow(0);
    let mut call = tokio_test::task::spawn(failover.oneshot(request()));
    assert_pending!(call.poll());
    assert!(
        b_handle.poll_request().is_pending(),
        "not ready is not failed: no failover"
    );
    a_handle.allow(1);
    assert!(call.is_woken(), "the primary's readiness wakes the call");
    assert_pending!(call.poll());
    let (_, reply) = a_handle.next_request().await.expect("the primary is called once ready");
    reply.send_response(ChatResponse::Complete(completion("a")));
    let response = assert_ready_ok!(call.poll());
    assert_eq!(response.provider(), "a");
}
