//! Splits a byte stream into lines, whatever the reads' boundaries.

/// Collects bytes and hands out whole lines ending in `\n`, `\r\n` or `\r`.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    start: usize,
    /// The last line ended in `\r`, so a `\n` that comes first next is its tail.
    skip_lf: bool,
}

impl LineSplitter {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn next_line(&mut self) -> Option<String> {
        if self.skip_lf && self.start < self.buf.len() {
            self.skip_lf = false;
            if self.buf[self.start] == b'\n' {
                self.start += 1;
            }
        }
        let rest = &self.buf[self.start..];
        let at = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let line = String::from_utf8_lossy(&rest[..at]).into_owned();
        let mut next = self.start + at + 1;
        if rest[at] == b'\r' {
            match rest.get(at + 1) {
                Some(b'\n') => next += 1,
                Some(_) => {}
                None => self.skip_lf = true,
            }
        }
        self.start = next;
        Some(line)
    }

    /// What is left without a line end, once the stream is over.
    pub(crate) fn take_rest(&mut self) -> Option<String> {
        let rest = &self.buf[self.start..];
        let line = (!rest.is_empty()).then(|| String::from_utf8_lossy(rest).into_owned());
        self.buf.clear();
        self.start = 0;
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
            while let Some(line) = lines.next_line() {
                out.push(line);
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
}
