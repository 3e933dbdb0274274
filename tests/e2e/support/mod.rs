pub mod fake;
pub mod gateway;

pub use fake::{FakeUpstream, Framing, Reply};
pub use gateway::{assert_close, assert_cut, assert_whole, hello, Gateway, Streamed, OPENAI_KEY};
