//! Splits a byte stream into lines, whatever the reads' boundaries.

use std::borrow::Cow;

use crate::error::ErrorKind;

/// The longest line (or SSE event) read from an upstream. A chunk of a
/// stream is a few hundred bytes; an upstream that sends a megabyte with no
/// line end is broken or hostile, and must not grow the gateway's memory
/// without bound.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// The error for a line or event past [`MAX_LINE_BYTES`].
pub(crate) fn too_long() -> ErrorKind {
    ErrorKind::Protocol(format!("a line of the stream is longer than {MAX_LINE_BYTES} bytes"))
}

/// Collects bytes and hands out whole lines ending in `\n`, `\r\n` or `\r`.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    start: usize,
    /// Bytes before this were searched for a line end already: a long line
    /// that arrives in small reads is searched once, not once per read.
    scanned: usize,
    /// The last line ended in `\r`, so a `\n` that comes first next is its tail.
    skip_lf: bool,
}

impl LineSplitter {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.scanned -= self.start.min(self.scanned);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole line, if one is here (borrowed from the buffer: no
    /// copy unless it is not UTF-8); an error once the line being read is
    /// past [`MAX_LINE_BYTES`] without its end.
    pub(crate) fn next_line(&mut self) -> Result<Option<Cow<'_, str>>, ErrorKind> {
        if self.skip_lf && self.start < self.buf.len() {
            self.skip_lf = false;
            if self.buf[self.start] == b'\n' {
                self.start += 1;
            }
        }
        let from = self.scanned.max(self.start);
        let Some(found) = self.buf[from..].iter().position(|&b| b == b'\n' || b == b'\r') else {
            self.scanned = self.buf.len();
            return match self.buf.len() - self.start > MAX_LINE_BYTES {
                true => Err(too_long()),
                false => Ok(None),
            };
        };
        let end = from + found;
        let line_start = self.start;
        let mut next = end + 1;
        if self.buf[end] == b'\r' {
            match self.buf.get(end + 1) {
                Some(b'\n') => next += 1,
                Some(_) => {}
                None => self.skip_lf = true,
            }
        }
        self.start = next;
        self.scanned = next;
        Ok(Some(String::from_utf8_lossy(&self.buf[line_start..end])))
    }

    /// What is left without a line end, once the stream is over.
    pub(crate) fn take_rest(&mut self) -> Option<String> {
        let rest = &self.buf[self.start..];
        let line = (!rest.is_empty()).then(|| String::from_utf8_lossy(rest).into_owned());
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(parts: &[&[u8]]) -> Vec<String> {
        let mut lines = LineSplitter::default();
        let mut out = Vec::new();
        for part in parts {
            lines.push(part);
            while let Some(line) = lines.next_line().unwrap() {
                out.push(line.into_owned());
            }
        }
        out.extend(lines.take_rest());
        out
    }

    #[test]
    fn every_line_ending_and_every_split_gives_the_same_lines() {
        let text = b"data: a\r\n\r\ndata: b\n\ndata: c\r\rtail";
        let whole = split(&[text]);
        assert_eq!(whole, ["data: a", "", "data: b", "", "data: c", "", "tail"]);
        for at in 0..text.len() {
            assert_eq!(split(&[&text[..at], &text[at..]]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(split(&bytes), whole);
    }

    #[test]
    fn multibyte_characters_split_across_reads_survive() {
        let text = "data: héllo ✓\n".as_bytes();
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(split(&bytes), ["data: héllo ✓"]);
    }

    #[test]
    fn a_line_past_the_cap_is_an_error_not_unbounded_memory() {
        let mut lines = LineSplitter::default();
        lines.push(b"data: ok\n");
        assert_eq!(lines.next_line().unwrap().as_deref(), Some("data: ok"));
        let piece = vec![b'x'; 64 * 1024];
        let mut pushed = 0;
        let error = loop {
            lines.push(&piece);
            pushed += piece.len();
            match lines.next_line() {
                Ok(None) => assert!(pushed <= MAX_LINE_BYTES, "{pushed} bytes held"),
                Ok(Some(line)) => panic!("no line end was sent, got {} bytes", line.len()),
                Err(error) => break error,
            }
        };
        assert!(pushed <= MAX_LINE_BYTES + piece.len());
        assert!(error.to_string().contains("longer than"), "{error}");
        // Long lines under the cap still arrive whole, in any reads.
        let mut lines = LineSplitter::default();
        let long = "y".repeat(MAX_LINE_BYTES - 1);
        for part in format!("{long}\n").as_bytes().chunks(4096) {
            lines.push(part);
        }
        assert_eq!(lines.next_line().unwrap().map(|l| l.len()), Some(long.len()));
    }
}
