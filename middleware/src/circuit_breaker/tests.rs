use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use tower::{Layer, ServiceExt};

use super::error::Open;
use super::{CircuitBreakerLayer, CircuitState};
use crate::test_support::*;

const RESET: Duration = Duration::from_secs(60);

fn threshold(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap()
}

fn layer() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder("p")
        .failure_threshold(threshold(3))
        .reset_after(RESET)
        .build()
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_faults_and_then_refuses_without_calling() {
    let provider = Scripted::always("p", Act::Fail(503));
    let layer = layer();
    let circuit = layer.handle();
    let service = layer.layer(provider.clone());
    for _ in 0..3 {
        let error = service.clone().oneshot(request()).await.unwrap_err();
        assert!(!error.is::<Open>());
    }
    assert!(matches!(circuit.state(), CircuitState::Open { .. }));
    for _ in 0..10 {
        let error = service.clone().oneshot(request()).await.unwrap_err();
        let open = error.downcast_ref::<Open>().expect("refused by the open circuit");
        assert!(open.retry_after <= RESET);
    }
    assert_eq!(provider.calls(), 3, "an open circuit never touches the provider");
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_count_and_client_errors_are_not_faults() {
    let provider = Scripted::new("p", |n| match n % 3 {
        0 | 1 => Act::Fail(500),
        _ => Act::Fail(400),
    });
    let layer = layer();
    let circuit = layer.handle();
    let service = layer.layer(provider);
    for _ in 0..9 {
        let _ = service.clone().oneshot(request()).await;
    }
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn exactly_one_probe_of_a_hundred_racing_requests_goes_through() {
    // Three faults open the circuit; the probe then hangs a while and succeeds.
    let provider = Scripted::new("p", |n| match n {
        0..=2 => Act::Fail(503),
        _ => Act::After(Duration::from_secs(5), Box::new(Act::Answer)),
    });
    let layer = layer();
    let circuit = layer.handle();
    let service = layer.layer(provider.clone());
    for _ in 0..3 {
        let _ = service.clone().oneshot(request()).await;
    }
    tokio::time::advance(RESET).await;

    let racers = (0..100).map(|_| service.clone().oneshot(request()));
    let results = join_all(racers).await;
    let (passed, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(passed.len(), 1);
    assert_eq!(refused.len(), 99);
    assert!(refused.iter().all(|r| r.as_ref().unwrap_err().is::<Open>()));
    assert_eq!(provider.calls(), 4);
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_circuit_again() {
    let provider = Scripted::always("p", Act::Fail(502));
    let layer = layer();
    let circuit = layer.handle();
    let service = layer.layer(provider.clone());
    for _ in 0..3 {
        let _ = service.clone().oneshot(request()).await;
    }
    tokio::time::advance(RESET).await;
    let probe = service.clone().oneshot(request()).await.unwrap_err();
    assert!(!probe.is::<Open>());
    let CircuitState::Open { retry_at } = circuit.state() else {
        panic!("open again")
    };
    assert_eq!(retry_at, tokio::time::Instant::now() + RESET);
    assert_eq!(provider.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_lets_the_next_caller_probe() {
    let provider = Scripted::new("p", |n| if n < 3 { Act::Fail(503) } else { Act::Hang });
    let layer = layer();
    let circuit = layer.handle();
    let service = layer.layer(provider.clone());
    for _ in 0..3 {
        let _ = service.clone().oneshot(request()).await;
    }
    tokio::time::advance(RESET).await;
    let probe = tokio::time::timeout(Duration::from_secs(1), service.clone().oneshot(request())).await;
    assert!(probe.is_err(), "the probe hangs and is dropped");
    assert!(matches!(circuit.state(), CircuitState::Open { .. }));
    let _ = tokio::time::timeout(Duration::from_secs(1), service.clone().oneshot(request())).await;
    assert_eq!(provider.calls(), 5, "the next caller probed at once");
}

#[tokio::test(start_paused = true)]
async fn a_stream_counts_when_it_ends_not_when_it_starts() {
    let broken = vec![delta("a"), Err(chrysalis_services::ProviderError::cut("p", "eof"))];
    let provider = Scripted::always("p", Act::Stream(broken));
    let layer = CircuitBreakerLayer::builder("p")
        .failure_threshold(threshold(1))
        .reset_after(RESET)
        .build();
    let circuit = layer.handle();
    let service = layer.layer(provider);
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(
        circuit.state(),
        CircuitState::Closed,
        "a started stream is no verdict yet"
    );
    let chrysalis_services::ChatResponse::Stream(stream) = response else {
        panic!()
    };
    let items: Vec<_> = stream.collect().await;
    assert!(items.last().unwrap().is_err());
    assert!(matches!(circuit.state(), CircuitState::Open { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_whole_stream_is_a_success() {
    let provider = Scripted::new("p", |n| match n {
        0 | 1 => Act::Fail(503),
        _ => Act::Stream(vec![delta("a"), end()]),
    });
    let layer = layer();
    let service = layer.layer(provider);
    for _ in 0..2 {
        let _ = service.clone().oneshot(request()).await;
    }
    let Ok(chrysalis_services::ChatResponse::Stream(stream)) = service.clone().oneshot(request()).await else {
        panic!()
    };
    let _: Vec<_> = stream.collect().await;
    // Two more faults would open it had the stream not reset the count.
    let _ = service.clone().oneshot(request()).await;
    assert_eq!(layer.handle().state(), CircuitState::Closed);
}

/// A handle taken from the layer watches the very circuit its services use
/// (the settings come before the circuit exists, on the builder).
#[tokio::test(start_paused = true)]
async fn a_handle_watches_the_circuit_its_services_use() {
    let layer = CircuitBreakerLayer::builder("p")
        .failure_threshold(threshold(1))
        .build();
    let circuit = layer.handle();
    let service = layer.layer(Scripted::always("p", Act::Fail(503)));
    let _ = service.oneshot(request()).await;
    assert!(matches!(circuit.state(), CircuitState::Open { .. }));
}
