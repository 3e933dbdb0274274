pub mod fake;
pub mod gateway;

pub use fake::{FakeUpstream, Framing, Recorded, Reply};
pub use gateway::{
    assert_close, assert_cut, assert_whole, hello, sse_data, temp_db, Gateway, Streamed, ANTHROPIC_KEY, OPENAI_KEY,
};
