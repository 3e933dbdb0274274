use std::time::Duration;

use chrysalis_services::{ChatResponse, ErrorKind, ProviderError};
use futures_util::StreamExt;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, ServiceExt};

use super::error::{AllFailed, AllOpen};
use super::{Failover, Target};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::test_support::*;

type Boxed = BoxCloneSyncService<chrysalis_services::ChatRequest, ChatResponse, BoxError>;

fn boxed(provider: Scripted) -> Boxed {
    BoxCloneSyncService::new(provider.map_err(BoxError::from))
}

fn pair(primary: Scripted, fallback: Scripted) -> Failover<Boxed> {
    Failover::new(vec![
        Target::primary(primary.name, boxed(primary)),
        Target::fallback(fallback.name, Some("pinned".into()), boxed(fallback)),
    ])
}

#[tokio::test]
async fn a_fault_moves_on_and_the_fallback_gets_its_pinned_model() {
    let (a, b) = (
        Scripted::always("a", Act::Fail(503)),
        Scripted::always("b", Act::Answer),
    );
    let failover = pair(a.clone(), b.clone());
    let mut request = request();
    request.model = Some("asked".into());
    let response = failover.clone().oneshot(request).await.unwrap();
    assert_eq!(response.provider(), "b");
    assert_eq!(a.models(), [Some("asked".into())]);
    assert_eq!(b.models(), [Some("pinned".into())]);
    let stats = failover.stats();
    assert_eq!((stats[0].failovers_from, stats[1].failovers_to), (1, 1));
}

#[tokio::test]
async fn a_bad_request_does_not_move_on() {
    let (a, b) = (
        Scripted::always("a", Act::Fail(400)),
        Scripted::always("b", Act::Answer),
    );
    let error = pair(a, b.clone()).oneshot(request()).await.unwrap_err();
    assert_eq!(error.downcast_ref::<ProviderError>().unwrap().status(), Some(400));
    assert_eq!(b.calls(), 0);
}

#[tokio::test]
async fn when_all_fail_every_attempt_is_listed_in_order() {
    let (a, b) = (
        Scripted::always("a", Act::Fail(500)),
        Scripted::always("b", Act::Fail(429)),
    );
    let error = pair(a, b).oneshot(request()).await.unwrap_err();
    let all = error.downcast_ref::<AllFailed>().unwrap();
    let tried: Vec<_> = all.attempts.iter().map(|a| a.provider).collect();
    assert_eq!(tried, ["a", "b"]);
    let status = all.attempts[1].error.downcast_ref::<ProviderError>().unwrap().status();
    assert_eq!(status, Some(429));
}

#[tokio::test(start_paused = true)]
async fn open_circuits_are_skipped_without_waiting_and_all_open_says_when() {
    let breaker = |name| {
        CircuitBreakerLayer::builder(name)
            .failure_threshold(std::num::NonZeroU32::MIN)
            .reset_after(Duration::from_secs(30))
            .build()
    };
    let (a, b) = (
        Scripted::always("a", Act::Fail(503)),
        Scripted::always("b", Act::Fail(503)),
    );
    let failover = Failover::new(vec![
        Target::primary("a", BoxCloneSyncService::new(breaker("a").layer(a.clone()))),
        Target::fallback("b", None, BoxCloneSyncService::new(breaker("b").layer(b.clone()))),
    ]);
    assert!(failover.clone().oneshot(request()).await.unwrap_err().is::<AllFailed>());
    tokio::time::advance(Duration::from_secs(10)).await;
    let error = failover.clone().oneshot(request()).await.unwrap_err();
    let all_open = error.downcast_ref::<AllOpen>().expect("every circuit is open");
    assert_eq!(all_open.retry_after, Duration::from_secs(20));
    assert_eq!((a.calls(), b.calls()), (1, 1), "open circuits were not called");
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_chunk_fails_over() {
    let cut = Err(ProviderError::cut("a", "eof"));
    let a = Scripted::always("a", Act::Stream(vec![cut]));
    let b = Scripted::always("b", Act::Stream(vec![delta("hi"), end()]));
    let ChatResponse::Stream(stream) = pair(a, b).oneshot(request()).await.unwrap() else {
        panic!()
    };
    assert_eq!(stream.provider, "b");
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items, [delta("hi"), end()]);
}

#[tokio::test]
async fn a_stream_that_fails_after_its_first_chunk_keeps_its_error() {
    let timeout = Err(ProviderError::new("a", ErrorKind::Timeout));
    let a = Scripted::always("a", Act::Stream(vec![delta("par"), timeout.clone()]));
    let b = Scripted::always("b", Act::Answer);
    let ChatResponse::Stream(stream) = pair(a, b.clone()).oneshot(request()).await.unwrap() else {
        panic!()
    };
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items, [delta("par"), timeout]);
    assert_eq!(b.calls(), 0, "text had reached the client: no failover");
}

#[tokio::test]
async fn a_prompt_too_long_moves_on_only_to_a_different_model_with_a_larger_window() {
    let too_long = || {
        let why = "This model's maximum context length is 128000 tokens.".to_owned();
        Act::Error(ProviderError::new("a", ErrorKind::ContextLength(why)))
    };
    let prices = std::sync::Arc::new(chrysalis_services::pricing::PriceTable::builtin());
    let failover = |fallbacks: Vec<(&'static str, &str)>| {
        let primary = Scripted::always("a", too_long());
        let mut targets = vec![Target::primary("a", boxed(primary))];
        let scripted: Vec<_> = fallbacks
            .iter()
            .map(|(name, model)| {
                let provider = Scripted::always(name, Act::Answer);
                targets.push(Target::fallback(name, Some((*model).into()), boxed(provider.clone())));
                provider
            })
            .collect();
        (Failover::new(targets).context_windows(prices.clone()), scripted)
    };
    let mut request = request();
    request.model = Some("gpt-4o-mini".into());

    // Same model, then a smaller window, then a larger one: only the last is asked.
    let (larger, called) = failover(vec![
        ("b", "gpt-4o-mini"),
        ("c", "gpt-3.5-turbo"),
        ("d", "gemini-2.5-pro"),
    ]);
    let response = larger.oneshot(request.clone()).await.unwrap();
    assert_eq!(response.provider(), "d");
    assert_eq!(called.iter().map(Scripted::calls).collect::<Vec<_>>(), [0, 0, 1]);

    // No larger window: the refusal itself, a 400 with the provider's reason.
    let (none, called) = failover(vec![("b", "gpt-4o-mini")]);
    let error = none.oneshot(request.clone()).await.unwrap_err();
    assert!(
        error.downcast_ref::<ProviderError>().unwrap().is_context_length(),
        "{error}"
    );
    assert_eq!(called[0].calls(), 0);

    // Without windows it is a refusal like any malformed request.
    let primary = Scripted::always("a", too_long());
    let fallback = Scripted::always("b", Act::Answer);
    let plain = pair(primary, fallback.clone());
    assert!(plain.oneshot(request).await.is_err());
    assert_eq!(fallback.calls(), 0);
}
