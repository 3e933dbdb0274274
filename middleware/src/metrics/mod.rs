//! Prometheus metrics (`prometheus-client`), in OpenTelemetry GenAI names where
//! the semantic conventions have one, at two places of the stack:
//!
//! - [`RequestMetricsLayer`] around the whole chat path: requests by provider, model
//!   and outcome (rejections included), in-flight requests, open streams, and
//!   `gateway_overhead_seconds`, the time the gateway itself adds (total time
//!   minus the time spent waiting on upstreams);
//! - [`ProviderMetricsLayer`] around each provider: `gen_ai_client_operation_duration_seconds`,
//!   `gen_ai_client_operation_time_to_first_chunk_seconds`, `gen_ai_client_token_usage`,
//!   cost, and the calls, failures and latency that `/v1/providers` shows.
//!
//! Label values are bounded: a model name becomes a label only if it is known
//! in advance or among the first [`MAX_MODELS`] seen; others count as `other`.
//!
//! ```
//! use chrysalis_middleware::metrics::{Metrics, RequestMetricsLayer, ProviderMetricsLayer};
//! use chrysalis_services::mock::{Mock, MockConfig};
//! use prometheus_client::registry::Registry;
//! use tower::{Layer, ServiceBuilder};
//!
//! let mut registry = Registry::default();
//! let metrics = Metrics::register(&mut registry, ["mock-1"]);
//! let provider = ProviderMetricsLayer::new(&metrics, "mock");
//! let service = ServiceBuilder::new()
//!     .layer(RequestMetricsLayer::new(&metrics))
//!     .layer(provider)
//!     .service(Mock::new(MockConfig::default()));
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! ```

mod families;
mod latency;
mod provider;
mod request;
mod upstream;

pub use families::{Metrics, MAX_MODELS};
pub use latency::{LatencySnapshot, ProviderStats};
pub use provider::{ProviderMetrics, ProviderMetricsLayer};
pub use request::{RequestMetrics, RequestMetricsLayer};

#[cfg(test)]
mod tests;
