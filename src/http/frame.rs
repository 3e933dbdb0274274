//! Writing SSE `data:` frames cheaply. A text delta's frame differs from the
//! stream's other text frames only by its text, so [`TextFrames`] builds the
//! bytes around the text once per stream and, per delta, writes only the
//! escaped text between them. Other frames are serialised into one reused
//! buffer and handed to the event in one piece: axum's `json_data` scans
//! every small piece serde writes for line ends.

use axum::response::sse::Event;
use serde::Serialize;

/// Serialises frames into a buffer kept for the stream.
#[derive(Default)]
pub(super) struct FrameBuffer(Vec<u8>);

impl FrameBuffer {
    /// `value` as a `data:` event.
    pub(super) fn json<T: Serialize>(&mut self, value: &T) -> Event {
        self.named(None, value)
    }

    /// `value` as a `data:` event of type `name` (`event: name`).
    pub(super) fn named<T: Serialize>(&mut self, name: Option<&'static str>, value: &T) -> Event {
        self.0.clear();
        serde_json::to_writer(&mut self.0, value).expect("frames always serialise");
        self.event(name)
    }

    fn event(&self, name: Option<&'static str>) -> Event {
        let event = match name {
            Some(name) => Event::default().event(name),
            None => Event::default(),
        };
        // Serialised JSON has every line end escaped: the event is one `data:` line.
        event.data(self.as_str())
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("JSON is UTF-8")
    }
}

/// The frames of a stream's text deltas: `before`, the text as a JSON
/// string, `after`.
pub(super) struct TextFrames {
    name: Option<&'static str>,
    before: Box<[u8]>,
    after: Box<[u8]>,
    buffer: FrameBuffer,
}

impl TextFrames {
    /// Frames that put each text where `template`, serialised, has
    /// [`TextFrames::SLOT`] (which it holds once).
    pub(super) fn new<T: Serialize>(template: &T) -> Self {
        Self::named(None, template)
    }

    /// Frames of events of type `name`, else as [`TextFrames::new`].
    pub(super) fn named<T: Serialize>(name: Option<&'static str>, template: &T) -> Self {
        let whole = serde_json::to_vec(template).expect("frames always serialise");
        let slot = serde_json::to_vec(Self::SLOT).expect("a string serialises");
        let at = whole
            .windows(slot.len())
            .position(|w| w == slot.as_slice())
            .expect("the template holds the slot");
        Self {
            name,
            before: whole[..at].into(),
            after: whole[at + slot.len()..].into(),
            buffer: FrameBuffer::default(),
        }
    }

    /// What a template puts where each text goes.
    pub(super) const SLOT: &'static str = "\u{1}chrysalis-text\u{1}";

    /// The frame of one text delta.
    pub(super) fn text(&mut self, text: &str) -> Event {
        self.write(text);
        self.buffer.event(self.name)
    }

    fn write(&mut self, text: &str) -> &str {
        let out = &mut self.buffer.0;
        out.clear();
        out.extend_from_slice(&self.before);
        serde_json::to_writer(&mut *out, text).expect("a string serialises");
        out.extend_from_slice(&self.after);
        self.buffer.as_str()
    }

    /// The stream's buffer, for its other frames.
    pub(super) fn buffer(&mut self) -> &mut FrameBuffer {
        &mut self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Frame<'a> {
        content: &'a str,
        model: &'a str,
    }

    #[test]
    fn a_text_frame_is_the_template_serialised_with_the_text() {
        let model = "m\"1 \u{2028}";
        let mut frames = TextFrames::new(&Frame {
            content: TextFrames::SLOT,
            model,
        });
        for text in ["plain", "line\nend \"quoted\" \\ é \u{7}", ""] {
            let expected = serde_json::to_string(&Frame { content: text, model }).unwrap();
            assert_eq!(frames.write(text), expected);
        }
    }
}
