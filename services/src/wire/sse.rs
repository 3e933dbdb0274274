//! Server-sent events, as the WHATWG HTML standard parses them.

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
    /// Feeds one line; a blank line dispatches the event built so far.
    pub(crate) fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            return Some(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(lines: &[&str]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        lines.iter().filter_map(|l| parser.line(l)).collect()
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
