//! What the fuzz targets in `fuzz/` call (feature `fuzzing`; not a stable API).

use crate::wire::splits::decode_cut;
use crate::wire::Protocol;

/// Decodes `body`, cut at `cuts`, as the stream of the provider `which`
/// picks (OpenAI, Anthropic or Ollama). Panics if it panics, or if the
/// stream ends without its end marker or an error.
pub fn decode_stream(which: u8, body: &[u8], cuts: &[usize]) {
    match which % 3 {
        0 => ends_loudly(body, cuts, crate::openai::protocol),
        1 => ends_loudly(body, cuts, crate::anthropic::protocol),
        _ => ends_loudly(body, cuts, crate::ollama::protocol),
    }
}

fn ends_loudly<P: Protocol>(body: &[u8], cuts: &[usize], make: fn() -> P) {
    let decoded = decode_cut(body, cuts, &make);
    assert!(
        !matches!(decoded.end, Ok(None)),
        "the stream ended quietly: {decoded:?}"
    );
}
