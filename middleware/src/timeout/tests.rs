use std::time::Duration;

use chrysalis_services::{ChatResponse, ErrorKind};
use futures_util::StreamExt;
use tower::{Layer, ServiceExt};

use super::error::Elapsed;
use super::TimeoutLayer;
use crate::test_support::*;

#[tokio::test(start_paused = true)]
async fn a_silent_upstream_times_out() {
    let service =
        TimeoutLayer::new(Duration::from_secs(2), Duration::from_secs(2)).layer(Scripted::always("p", Act::Hang));
    let started = tokio::time::Instant::now();
    let error = service.oneshot(request()).await.unwrap_err();
    assert!(error.is::<Elapsed>());
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_timely_answer_passes() {
    let slow = Act::After(Duration::from_millis(1900), Box::new(Act::Answer));
    let service = TimeoutLayer::new(Duration::from_secs(2), Duration::from_secs(2)).layer(Scripted::always("p", slow));
    assert!(service.oneshot(request()).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_ends_with_a_timeout_error() {
    let service = TimeoutLayer::new(Duration::from_secs(2), Duration::from_secs(2))
        .layer(Scripted::always("p", Act::StallAfter(2)));
    let ChatResponse::Stream(stream) = service.oneshot(request()).await.unwrap() else {
        panic!()
    };
    let started = tokio::time::Instant::now();
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[2].as_ref().unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_first_chunk_is_late_times_out_at_the_first_token_deadline() {
    let first_token = Duration::from_secs(2);
    let late = Act::Paced(vec![(Duration::from_secs(3), delta("late")), (Duration::ZERO, end())]);
    let service = TimeoutLayer::new(first_token, Duration::from_secs(60)).layer(Scripted::always("p", late));
    let started = tokio::time::Instant::now();
    let ChatResponse::Stream(stream) = service.oneshot(request()).await.unwrap() else {
        panic!()
    };
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(
        started.elapsed(),
        first_token,
        "counted from the call, not from the stream's head"
    );
}

#[tokio::test(start_paused = true)]
async fn once_a_stream_flows_each_chunk_has_the_stall_timeout_and_not_the_first_tokens() {
    let (first_token, stall) = (Duration::from_secs(2), Duration::from_secs(5));
    let slow = Act::Paced(vec![
        (Duration::from_secs(1), delta("a")),
        (Duration::from_secs(4), delta("b")),
        (Duration::from_secs(6), delta("c")),
    ]);
    let service = TimeoutLayer::new(first_token, stall).layer(Scripted::always("p", slow));
    let started = tokio::time::Instant::now();
    let ChatResponse::Stream(stream) = service.oneshot(request()).await.unwrap() else {
        panic!()
    };
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[1].is_ok(), "4 s between chunks is under the stall timeout");
    assert_eq!(items[2].as_ref().unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(1 + 4 + 5));
}
