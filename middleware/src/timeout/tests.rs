use std::time::Duration;

use chrysalis_services::{ChatResponse, ErrorKind};
use futures_util::StreamExt;
use tower::{Layer, ServiceExt};

use super::error::Elapsed;
use super::TimeoutLayer;
use crate::test_support::*;

#[tokio::test(start_paused = true)]
async fn a_silent_upstream_times_out() {
    let service = TimeoutLayer::new(Duration::from_secs(2)).layer(Scripted::always("p", Act::Hang));
    let started = tokio::time::Instant::now();
    let error = service.oneshot(request()).await.unwrap_err();
    assert!(error.is::<Elapsed>());
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_timely_answer_passes() {
    let slow = Act::After(Duration::from_millis(1900), Box::new(Act::Answer));
    let service = TimeoutLayer::new(Duration::from_secs(2)).layer(Scripted::always("p", slow));
    assert!(service.oneshot(request()).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_ends_with_a_timeout_error() {
    let service = TimeoutLayer::new(Duration::from_secs(2)).layer(Scripted::always("p", Act::StallAfter(2)));
    let ChatResponse::Stream(stream) = service.oneshot(request()).await.unwrap() else {
        panic!()
    };
    let started = tokio::time::Instant::now();
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[2].as_ref().unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}
