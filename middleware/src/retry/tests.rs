use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrysalis_services::{ErrorKind, ProviderError};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use super::error::Retried;
use super::{RetryLayer, REASONS};
use crate::test_support::*;
use crate::timeout::TimeoutLayer;

fn layer(retries: u32) -> RetryLayer {
    RetryLayer::builder("p")
        .max_retries(retries)
        .backoff(Duration::from_millis(100))
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn retry_after(status: u16, wait: u64) -> Act {
    Act::Error(status_error("p", status).with_retry_after(Some(Duration::from_secs(wait))))
}

#[tokio::test(start_paused = true)]
async fn a_500_then_a_200_is_one_answer_after_a_short_backoff() {
    let provider = Scripted::new("p", |n| if n == 0 { Act::Fail(500) } else { Act::Answer });
    let started = Instant::now();
    let answer = layer(1).layer(provider.clone()).oneshot(request()).await;
    assert!(answer.is_ok());
    assert_eq!(provider.calls(), 2);
    assert!(
        started.elapsed() <= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_that_fits_the_deadline_is_waited_exactly() {
    let provider = Scripted::new("p", |n| if n == 0 { retry_after(429, 3) } else { Act::Answer });
    let started = Instant::now();
    assert!(layer(1).layer(provider.clone()).oneshot(request()).await.is_ok());
    assert_eq!(provider.calls(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_fails_over_at_once() {
    let provider = Scripted::always("p", retry_after(429, 30));
    let started = Instant::now();
    let error = layer(1).layer(provider.clone()).oneshot(request()).await.unwrap_err();
    assert_eq!(provider.calls(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(error.downcast_ref::<ProviderError>().unwrap().status(), Some(429));
}

#[tokio::test(start_paused = true)]
async fn what_cannot_succeed_on_a_second_try_is_not_retried() {
    for act in [Act::Fail(400), Act::Fail(401), Act::Fail(404), Act::Hang] {
        let provider = Scripted::always("p", act);
        let service =
            TimeoutLayer::new(Duration::from_secs(5), Duration::from_secs(5)).layer(layer(3).layer(provider.clone()));
        assert!(service.oneshot(request()).await.is_err());
        assert_eq!(provider.calls(), 1);
    }
    let connect = ProviderError::new("p", ErrorKind::Connect("connection refused".into()));
    let provider = Scripted::new("p", move |n| {
        if n == 0 {
            Act::Error(connect.clone())
        } else {
            Act::Answer
        }
    });
    assert!(layer(1).layer(provider.clone()).oneshot(request()).await.is_ok());
    assert_eq!(provider.calls(), 2, "a connection refused is tried again");
}

#[tokio::test(start_paused = true)]
async fn after_its_retries_a_call_fails_with_every_try_and_backoffs_grow_within_their_ceilings() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let seen = times.clone();
    let provider = Scripted::new("p", move |_| {
        seen.lock().unwrap().push(Instant::now());
        Act::Fail(503)
    });
    let layer = layer(3);
    let handle = layer.handle();
    let error = layer.layer(provider.clone()).oneshot(request()).await.unwrap_err();
    assert_eq!(provider.calls(), 4);
    let retried = error.downcast_ref::<Retried>().expect("the error lists the tries");
    assert_eq!(retried.earlier.len(), 3);
    assert!(retried.earlier.iter().all(|e| e.status() == Some(503)));
    assert_eq!(
        retried.last.downcast_ref::<ProviderError>().unwrap().status(),
        Some(503)
    );
    let times = times.lock().unwrap();
    for (n, gap) in times.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let ceiling = Duration::from_millis(100) * (1 << n);
        assert!(gap <= ceiling, "retry {}: waited {gap:?}, over {ceiling:?}", n + 1);
    }
    let counts: Vec<_> = handle.retries().collect();
    assert_eq!(counts.len(), REASONS.len());
    assert!(counts.contains(&("503", 3)), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_spent_retry_budget_stops_retries() {
    let none_left = RetryLayer::builder("p")
        .max_retries(3)
        .budget(0.0, Duration::from_secs(10), 0)
        .build()
        .unwrap();
    let provider = Scripted::always("p", Act::Fail(503));
    assert!(none_left.layer(provider.clone()).oneshot(request()).await.is_err());
    assert_eq!(provider.calls(), 1);
}

#[test]
fn settings_out_of_range_are_refused_when_built() {
    assert!(RetryLayer::builder("p").deadline(Duration::ZERO).build().is_err());
    assert!(RetryLayer::builder("p")
        .budget(11.0, Duration::from_secs(10), 1)
        .build()
        .is_err());
    assert!(RetryLayer::builder("p")
        .budget(0.2, Duration::from_secs(61), 1)
        .build()
        .is_err());
}
