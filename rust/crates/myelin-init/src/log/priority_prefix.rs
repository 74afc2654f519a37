//! The sd-daemon priority prefix (`<0>` … `<7>`, sd-daemon(3)) a line may start with.

use crate::level::Level;

/// Strips an sd-daemon `<N>` priority prefix.
pub fn split_priority(line: &str) -> (Option<Level>, &str) {
    let b = line.as_bytes();
    if b.len() >= 3 && b[0] == b'<' && b[2] == b'>' {
        if let Some(l) = Level::from_digit(b[1]) {
            return (Some(l), &line[3..]);
        }
    }
    (None, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_prefix() {
        assert_eq!(split_priority("<3>boom"), (Some(Level::Err), "boom"));
        assert_eq!(split_priority("<9>x"), (None, "<9>x"));
        assert_eq!(split_priority("<3"), (None, "<3"));
    }
}
