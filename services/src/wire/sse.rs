//! Server-sent events, as the WHATWG HTML standard parses them.

use super::lines::{too_long, MAX_LINE_BYTES};
use crate::error::ErrorKind;

/// One dispatched event, borrowed from the parser until its next line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SseEvent<'a> {
    /// The `event:` field; empty for the default `message`.
    pub(crate) event: &'a str,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: &'a str,
}

/// Builds events from lines; comments (`: keep-alive`) and unknown fields
/// are skipped. Its buffers are kept from one event to the next, so an
/// event costs no allocation.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    event: String,
    data: String,
    has_data: bool,
    /// The last line dispatched an event: the next one starts afresh.
    dispatched: bool,
}

impl SseParser {
    /// Feeds one line; a blank line dispatches the event built so far. An
    /// event whose data lines add up past [`MAX_LINE_BYTES`] is an error.
    pub(crate) fn line(&mut self, line: &str) -> Result<Option<SseEvent<'_>>, ErrorKind> {
        if std::mem::take(&mut self.dispatched) {
            self.event.clear();
            self.data.clear();
        }
        if line.is_empty() {
            self.dispatched = true;
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            return Ok(Some(SseEvent {
                event: &self.event,
                data: &self.data,
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

    fn events(lines: &[&str]) -> Vec<(String, String)> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for line in lines {
            if let Some(event) = parser.line(line).unwrap() {
                events.push((event.event.to_owned(), event.data.to_owned()));
            }
        }
        events
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
                ("ping".to_owned(), "{}".to_owned()),
                (String::new(), "one\ntwo".to_owned())
            ]
        );
    }
}
