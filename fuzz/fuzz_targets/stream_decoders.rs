//! Upstream stream decoders (OpenAI and OpenRouter SSE, Anthropic SSE, Ollama
//! NDJSON) on any bytes, cut anywhere: no panic, and no stream that ends
//! without its end marker or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, Vec<u16>, &[u8])| {
    let (which, cuts, body) = input;
    let cuts: Vec<usize> = cuts.into_iter().map(usize::from).collect();
    chrysalis_services::fuzzing::decode_stream(which, body, &cuts);
});
