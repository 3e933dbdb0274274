//! Server-sent events, as the WHATWG HTML standard parses them.

use super::lines::{too_long, MAX_LINE_BYTES};
use crate::error::ErrorKind;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; empty for the default `message`.
    pub(crate) event: String,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// Builds events from lines; comments (`: keep-alive`) and unknown fields are skipped.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds one line; a blank line dispatches the event built so far. An
    /// event whose data lines add up past [`MAX_LINE_BYTES`] is an error.
    pub(crate) fn line(&mut self, line: &str) -> Result<Option<SseEvent>, ErrorKind> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            return Ok(Some(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
            }));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() >= MAX_LINE_BYTES {
                    return Err(too_long());
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(lines: &[&str]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        lines.iter().filter_map(|l| parser.line(l).unwrap()).collect()
    }

    #[test]
    fn events_comments_and_multiline_data() {
        let got = events(&[
            ": OPENROUTER PROCESSING",
            "",
            "event: ping",
            "data: {}",
            "",
            "data:one",
            "data: two",
            "id: 7",
            "",
        ]);
        assert_eq!(
            got,
            [
                SseEvent {
                    event: "ping".into(),
                    data: "{}".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "one\ntwo".into()
                },
            ]
        );
    }
}
