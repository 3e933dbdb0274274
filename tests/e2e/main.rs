//! End-to-end tests: the real router over real HTTP, in front of fake
//! upstreams that speak each provider's wire format.

mod support;

mod anthropic;
mod api;
mod binary;
mod budget;
mod edge;
mod faults;
mod messages;
mod observability;
mod ollama;
mod openai;
mod openai_compat;
mod openrouter;
mod properties;
mod resilience;
mod responses;
mod resume;
mod sdk_tools;
mod shared_budget;
mod shared_state;
mod soak;
mod tools;
