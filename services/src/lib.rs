//! Chat types and one [`tower::Service`] per LLM provider.
//!
//! Every provider is a `Service<ChatRequest, Response = ChatResponse, Error = ProviderError>`:
//! it speaks its upstream's real wire format, prices its own usage from the
//! [`pricing::PriceTable`], and turns every upstream failure into a typed
//! [`ProviderError`] that knows whether trying another provider can help.
//!
//! ```no_run
//! use chrysalis_services::{mock::{Mock, MockConfig}, ChatRequest, Message, Role};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), chrysalis_services::ProviderError> {
//! let mock = Mock::new(MockConfig::default());
//! let request = ChatRequest::new("planner", vec![Message::new(Role::User, "Hello")]);
//! let completion = mock.oneshot(request).await?.into_completion().await?;
//! println!("{} ({} tokens)", completion.content, completion.usage.total_tokens());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod anthropic;
pub mod chat;
mod client;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod openrouter;
pub mod pricing;
pub mod provider;
pub mod redact;
mod tally;
mod upstream;
mod wire;

pub use chat::{
    AnthropicNative, ChatRequest, ChatResponse, ChatStream, Chunk, ChunkStream, Completion, Content, CutCharge,
    FinishReason, ImageUrl, Message, Part, ResentPrompt, ResponseFormat, ResponseMeta, Role, StreamEnd, Tool, ToolCall,
    ToolCallDelta, ToolChoice, Usage,
};
pub use client::ProviderConfig;
pub use error::{ErrorKind, ProviderError};
pub use upstream::{http_client, warm_this_thread, HttpClient};
