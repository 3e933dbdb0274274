//! Names a client chooses (its agent id, the model it asks for): bounded
//! before any work, since they become log fields, ledger rows and labels.

use super::params::invalid;
use crate::error::ApiError;

/// The longest agent id or model name taken. Real model names are under
/// 100 bytes (`accounts/fireworks/models/llama-v3p1-405b-instruct`).
pub(super) const MAX_NAME_BYTES: usize = 256;

/// `value` of `param`, if it is a name: at most [`MAX_NAME_BYTES`] and no
/// control characters.
pub(super) fn checked(param: &'static str, value: String) -> Result<String, ApiError> {
    if value.len() > MAX_NAME_BYTES {
        let why = format!("`{param}` must be at most {MAX_NAME_BYTES} bytes, not {}", value.len());
        return Err(invalid(param, why));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(param, format!("`{param}` must not hold control characters")));
    }
    Ok(value)
}

/// The model a request asks for: `None` when absent or blank, else checked.
pub(super) fn model(model: Option<String>) -> Result<Option<String>, ApiError> {
    model
        .filter(|m| !m.trim().is_empty())
        .map(|m| checked("model", m))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_single_line() {
        assert_eq!(checked("model", "gpt-4o-mini".into()).unwrap(), "gpt-4o-mini");
        let error = checked("model", "m".repeat(MAX_NAME_BYTES + 1)).unwrap_err();
        assert_eq!((error.status.as_u16(), error.param.as_deref()), (400, Some("model")));
        assert!(checked("agent_id", "a\nb".into()).is_err());
        assert!(checked("agent_id", "ü".repeat(MAX_NAME_BYTES / 2)).is_ok());
    }
}
