//! The Chrysalis gateway process: configuration, the stack, the HTTP edge.
//!
//! Tests and embedders mount [`stack::app`] on their own listener; the
//! `gateway` binary runs [`server::run`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod collector;
pub mod config;
pub mod error;
pub mod http;
pub mod logging;
pub mod providers;
pub mod responses_store;
pub mod server;
pub mod shutdown;
pub mod stack;
