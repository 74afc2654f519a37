//! Service output split into lines of at most `line_max` bytes (the rest of a longer line becomes
//! further lines).

/// Splits a byte stream into lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter cutting lines at `max` bytes.
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            max,
        }
    }

    /// Feeds bytes; complete lines are passed to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(String)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push_capped(&data[..i], out);
                    out(String::from_utf8_lossy(&self.buf).into_owned());
                    self.buf.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.push_capped(data, out);
                    data = &[];
                }
            }
        }
    }

    fn push_capped(&mut self, mut data: &[u8], out: &mut impl FnMut(String)) {
        while self.buf.len() + data.len() > self.max {
            let room = self.max - self.buf.len();
            self.buf.extend_from_slice(&data[..room]);
            out(String::from_utf8_lossy(&self.buf).into_owned());
            self.buf.clear();
            data = &data[room..];
        }
        self.buf.extend_from_slice(data);
    }

    /// The unterminated rest, at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let s = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_cuts_and_joins() {
        let mut s = LineSplitter::new(8);
        let mut lines = Vec::new();
        s.feed(b"hello\nwor", &mut |l| lines.push(l));
        s.feed(b"ld\n0123456789abcdefXY\n\n", &mut |l| lines.push(l));
        s.feed(b"tail", &mut |l| lines.push(l));
        assert_eq!(lines, ["hello", "world", "01234567", "89abcdef", "XY", ""]);
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }
}
