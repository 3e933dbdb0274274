//! The one function every text that crosses the gateway from elsewhere goes
//! through before it reaches a client, a log line or a metric: it removes
//! the secrets this process holds (registered when they are configured) and
//! anything shaped like a provider key or a bearer token.
//!
//! Upstreams echo keys back (OpenAI's `Incorrect API key provided: sk-...`,
//! a proxy quoting the `Authorization` header), so the shape rules catch keys
//! this process never held too.
//!
//! ```
//! use chrysalis_services::redact::{redact, register_secret};
//! register_secret("my-very-secret-key-42");
//! assert_eq!(redact("key my-very-secret-key-42 refused"), "key [redacted] refused");
//! assert_eq!(redact("Incorrect API key provided: sk-proj-abc123def456."), "Incorrect API key provided: [redacted].");
//! ```

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not registered: they would blank out
/// ordinary words.
const MIN_SECRET_LEN: usize = 8;

static SECRETS: RwLock<Vec<Box<str>>> = RwLock::new(Vec::new());

/// Remembers `secret` (an API key, an auth token), so that [`redact`] removes
/// it wherever it appears, whatever its shape.
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !secrets.iter().any(|s| &**s == secret) {
        secrets.push(secret.into());
    }
}

/// Key shapes: a prefix that starts a key, and how many key characters must
/// follow it for the word to be taken as one.
const SHAPES: &[(&str, usize)] = &[
    // OpenAI (sk-proj-, sk-svcacct-, sk-admin-, legacy sk-), Anthropic
    // (sk-ant-api03-, sk-ant-admin01-), OpenRouter (sk-or-v1-), DeepSeek.
    ("sk-", 6),
    ("sk_", 16),
    ("AIza", 30),  // Google
    ("gsk_", 20),  // Groq
    ("xai-", 20),  // xAI
    ("hf_", 20),   // Hugging Face
    ("pplx-", 20), // Perplexity
    ("r8_", 20),   // Replicate
    ("ghp_", 20),  // GitHub
    ("github_pat_", 20),
    ("AKIA", 16), // AWS access key ids
    ("eyJ", 30),  // JWTs (base64url of `{"`)
];

/// Labels after which a value is a secret, whatever it looks like
/// (`Authorization: Bearer x`, `x-api-key: x`, `api_key=x`).
const LABELS: &[&str] = &["bearer ", "x-api-key", "api-key", "api_key", "apikey"];

/// `text` without registered secrets and without anything shaped like a key.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut clean = Cow::Borrowed(text);
    {
        let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
        for secret in secrets.iter() {
            if clean.contains(&**secret) {
                clean = Cow::Owned(clean.replace(&**secret, REDACTED));
            }
        }
    }
    match scrub_shapes(&clean) {
        Some(scrubbed) => Cow::Owned(scrubbed),
        None => clean,
    }
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'.' | b'+' | b'/' | b'=')
}

/// The text with key-shaped words replaced, or `None` if there were none.
fn scrub_shapes(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let found = if at_boundary { secret_at(bytes, i) } else { None };
        match found {
            Some((value_start, end)) => {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..value_start]);
                out.push_str(REDACTED);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    let mut out = out?;
    out.push_str(&text[copied..]);
    Some(out)
}

/// Where the secret starting at `i` lies: (start of what to replace, its end).
fn secret_at(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let rest = &bytes[i..];
    for &(prefix, min) in SHAPES {
        if rest.starts_with(prefix.as_bytes()) {
            let end = key_end(bytes, i + prefix.len());
            if end - (i + prefix.len()) >= min {
                return Some((i, end));
            }
        }
    }
    for label in LABELS {
        if rest.len() >= label.len() && rest[..label.len()].eq_ignore_ascii_case(label.as_bytes()) {
            let mut start = i + label.len();
            while start < bytes.len() && matches!(bytes[start], b' ' | b':' | b'=' | b'"' | b'\'') {
                start += 1;
            }
            // `Authorization: Bearer <token>` keeps its scheme word.
            if bytes[start..].len() >= 7 && bytes[start..start + 7].eq_ignore_ascii_case(b"bearer ") {
                start += 7;
            }
            let end = key_end(bytes, start);
            if end - start >= MIN_SECRET_LEN {
                return Some((start, end));
            }
        }
    }
    None
}

/// The end of a run of key characters from `start`; a trailing `.` is the
/// sentence's, not the key's.
fn key_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len() && is_key_char(bytes[end]) {
        end += 1;
    }
    while end > start && bytes[end - 1] == b'.' {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Realistic shapes of every provider's keys (made up, same form).
    const KEYS: &[&str] = &[
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_A7bC0dE3fG6hI9jK2lM5nO8pQ1rS4tU7vW0xY3zA6bC9dE2fG5hI8jK1lM4nO7pQ0rS3tU6vW9xY2zA5b",
        "sk-svcacct-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9z0X1c2V3b4N5m6Q7w8E9r0T1y2U3i4O5p6",
        "sk-admin-Zx9Cv8Bn7Mm6Ll5Kk4Jj3Hh2Gg1Ff0Dd9Ss8Aa7Qq6Ww5Ee4Rr3Tt2Yy1Uu0",
        "sk-4eC39HqLyjWDarjtT1zdp7dc8b9e5a7f6d1c2b3a4f5e6d",
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQr-AbCdEfAA",
        "sk-ant-admin01-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvWxYz01234567AA",
        "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        "gsk_8aB7cD6eF5gH4iJ3kL2mN1oP0qR9sT8uV7wX6yZ5aB4cD3eF2g",
        "xai-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvWxYz01234",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        "AKIAIOSFODNN7EXAMPLE",
        // A key OpenAI masks before echoing it.
        "sk-proj-********************************************abcd",
    ];

    #[test]
    fn every_provider_key_shape_is_removed_wherever_it_sits() {
        for key in KEYS {
            for text in [
                format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com."),
                format!(r#"{{"error":{{"message":"invalid x-api-key","key":"{key}"}}}}"#),
                format!("upstream said (key={key}, retry later)"),
                key.to_string(),
                format!("https://generativelanguage.googleapis.com/v1/models?key={key}&alt=sse"),
            ] {
                let clean = redact(&text);
                assert!(!clean.contains(key), "{key} survived in {clean}");
                assert!(clean.contains(REDACTED), "{clean}");
            }
        }
    }

    #[test]
    fn labelled_values_are_removed_whatever_their_shape() {
        for text in [
            "Authorization: Bearer gateway-token-SECRET-42",
            "authorization: bearer gateway-token-SECRET-42",
            "x-api-key: gateway-token-SECRET-42",
            r#"{"api_key": "gateway-token-SECRET-42"}"#,
        ] {
            let clean = redact(text);
            assert!(!clean.contains("SECRET"), "{clean}");
        }
    }

    #[test]
    fn registered_secrets_are_removed_whatever_their_shape() {
        register_secret("plain-looking-words-0042");
        assert_eq!(
            redact("a quoted plain-looking-words-0042, twice: plain-looking-words-0042"),
            "a quoted [redacted], twice: [redacted]"
        );
        register_secret("short");
        assert_eq!(redact("a short word"), "a short word");
    }

    #[test]
    fn ordinary_text_is_left_alone_and_not_copied() {
        for text in [
            "the upstream answered 503: overloaded",
            "task-runner failed; risk-free; disk-full",
            "model gpt-4o-mini not found",
            "Bearer",
            "",
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(t) if t == text), "{text}");
        }
    }
}
