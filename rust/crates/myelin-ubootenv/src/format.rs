//! The U-Boot environment block, byte by byte.
//!
//! An environment is a fixed-size block (`size` bytes, typically 8 KiB or 128 KiB) stored at a
//! fixed offset of a disk or flash. Two layouts exist:
//!
//! ```text
//! single                              redundant (two such blocks, at two offsets)
//! +0  u32 CRC-32, little-endian       +0  u32 CRC-32, little-endian
//! +4  data[size - 4]                  +4  u8 flags (a generation counter)
//!                                     +5  data[size - 5]
//! ```
//!
//! * `data` is a sequence of `name=value` entries, each terminated by a NUL byte, and the list is
//!   terminated by one extra NUL (an empty entry). Whatever follows is padding. Writers disagree
//!   on the padding (U-Boot writes 0x00, mkenvimage and fwup 0xFF, libubootenv leaves whatever
//!   was in its buffer), so this module accepts any padding on read and always writes 0xFF.
//! * The CRC is the standard CRC-32 (zlib's: reflected polynomial 0xEDB88320, initial value and
//!   final XOR 0xFFFFFFFF) over the whole data area, padding included, flags byte excluded.
//! * On read, as U-Boot's importer does: leading blanks of an entry are skipped, an entry starting
//!   with `#` is a comment, and an entry without `=` is not a variable. An entry with an empty
//!   value (`bootdir=`) is a variable whose value is empty: fwup, libubootenv and U-Boot's
//!   `mkenvimage` keep it, so every rewrite keeps it too (a *user* setting a value to "" means
//!   "delete" in `fw_setenv`, which [`check_value`] refuses for callers that set values).
//!   Backslashes are kept literally, as libubootenv and fwup do (U-Boot's own shell would
//!   unescape them), so values round-trip byte for byte with `fw_printenv`.
//! * Variables are written sorted by name (byte order), as U-Boot, libubootenv and fwup do.
//!
//! Of two redundant copies the active one is chosen by U-Boot's rule (`env_check_redund`): a copy
//! whose CRC fails never wins; with both valid, flags 255 loses to flags 0 (the counter wrapped),
//! otherwise the larger flags value wins and a tie goes to the first copy. A writer updates the
//! *other* copy with `flags = active.flags + 1` (wrapping), so a torn write leaves the active copy
//! untouched and still chosen.

use std::collections::BTreeMap;
use std::fmt;

/// Bytes taken by the CRC field at the start of every copy.
pub const CRC_LEN: usize = 4;

/// The variables of an environment, kept sorted by name as U-Boot writes them.
pub type Vars = BTreeMap<String, String>;

/// Which of the two on-disk layouts a copy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One copy: CRC then data.
    Single,
    /// Two copies: CRC, a flags byte, then data.
    Redundant,
}

impl Layout {
    /// Offset of the data area inside a copy.
    pub fn data_offset(self) -> usize {
        match self {
            Layout::Single => CRC_LEN,
            Layout::Redundant => CRC_LEN + 1,
        }
    }
}

/// Why a block could not be read as an environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The block is too small to hold the header and the list terminator.
    #[error("environment block of {size} bytes is too small (at least {min} bytes needed)")]
    TooSmall {
        /// Size of the block that was given.
        size: usize,
        /// Smallest size that can hold the layout.
        min: usize,
    },
    /// The stored CRC does not match the data (never written, corrupt or torn).
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// The CRC found in the first four bytes.
        stored: u32,
        /// The CRC of the data area as it is.
        computed: u32,
    },
    /// A variable name or value is not UTF-8.
    #[error("entry at byte {offset} is not valid UTF-8")]
    NotUtf8 {
        /// Offset of the entry from the start of the block.
        offset: usize,
    },
}

/// Why a set of variables cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The serialized variables do not fit into the block.
    #[error("variables need {needed} bytes but the environment holds only {available}")]
    TooLarge {
        /// Bytes the data area would need, terminator included.
        needed: usize,
        /// Size of the data area.
        available: usize,
    },
    /// A name or value is not allowed (see [`check_name`] and [`check_value`]).
    #[error(transparent)]
    Invalid(#[from] NameError),
}

/// Why a variable name or value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("variable name is empty")]
    EmptyName,
    /// The name contains a byte U-Boot would misread (`=`, NUL, blank or control) at `index`.
    #[error("variable name {name:?} has a forbidden character {ch:?} at index {index}")]
    BadNameChar {
        /// The offending name.
        name: String,
        /// The offending character.
        ch: char,
        /// Its byte index in the name.
        index: usize,
    },
    /// The name starts with `#`, which U-Boot reads as a comment.
    #[error("variable name {0:?} starts with '#', which U-Boot treats as a comment")]
    CommentName(String),
    /// The value contains a NUL byte, which would end the entry early.
    #[error("value of {name:?} contains a NUL byte at index {index}")]
    NulInValue {
        /// The variable whose value is bad.
        name: String,
        /// Byte index of the NUL in the value.
        index: usize,
    },
    /// The value is empty; U-Boot reads `name=` as "delete name", so unset it instead.
    #[error("value of {0:?} is empty; unset the variable instead")]
    EmptyValue(String),
}

/// Checks that `name` can be stored and read back unchanged by U-Boot and libubootenv.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::EmptyName);
    }
    if name.starts_with('#') {
        return Err(NameError::CommentName(name.to_owned()));
    }
    if let Some((index, ch)) = name
        .char_indices()
        .find(|&(_, c)| c == '=' || c.is_whitespace() || c.is_control())
    {
        return Err(NameError::BadNameChar {
            name: name.to_owned(),
            ch,
            index,
        });
    }
    Ok(())
}

/// Checks that `value` can be *set* for `name` by a user: not empty (in `fw_setenv` an empty
/// value means "delete") and storable ([`check_stored_value`]).
pub fn check_value(name: &str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::EmptyValue(name.to_owned()));
    }
    check_stored_value(name, value)
}

/// Checks that `value` can be stored for `name` and read back unchanged. An empty value is
/// stored as `name=`, as fwup and `mkenvimage` store it.
pub fn check_stored_value(name: &str, value: &str) -> Result<(), NameError> {
    if let Some(index) = value.bytes().position(|b| b == 0) {
        return Err(NameError::NulInValue {
            name: name.to_owned(),
            index,
        });
    }
    Ok(())
}

/// CRC-32 as U-Boot computes it over a data area.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// One decoded copy of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The flags byte of a redundant copy, `None` for a single one.
    pub flags: Option<u8>,
    /// The variables.
    pub vars: Vars,
}

/// Decodes one copy. The CRC is checked before anything else is looked at.
pub fn decode(block: &[u8], layout: Layout) -> Result<Decoded, DecodeError> {
    let data_offset = layout.data_offset();
    let min = data_offset + 1;
    if block.len() < min {
        return Err(DecodeError::TooSmall {
            size: block.len(),
            min,
        });
    }
    let stored = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
    let data = &block[data_offset..];
    let computed = crc32(data);
    if stored != computed {
        return Err(DecodeError::Crc { stored, computed });
    }
    let flags = match layout {
        Layout::Single => None,
        Layout::Redundant => Some(block[CRC_LEN]),
    };
    Ok(Decoded {
        flags,
        vars: parse_entries(data, data_offset)?,
    })
}

/// Parses the `name=value\0...\0\0` list; `base` is only used to report offsets.
fn parse_entries(data: &[u8], base: usize) -> Result<Vars, DecodeError> {
    let mut vars = Vars::new();
    let mut pos = 0;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|&b| b == 0)
            .map_or(data.len(), |n| pos + n);
        let entry = &data[pos..end];
        if entry.is_empty() {
            break;
        }
        let start = pos;
        pos = end + 1;
        let trimmed = trim_leading_blanks(entry);
        if trimmed.first() == Some(&b'#') {
            continue;
        }
        let Some(eq) = trimmed.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&trimmed[..eq], &trimmed[eq + 1..]);
        if name.is_empty() {
            continue;
        }
        let utf8 = |bytes: &[u8]| {
            String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8 {
                offset: base + start,
            })
        };
        vars.insert(utf8(name)?, utf8(value)?);
    }
    Ok(vars)
}

fn trim_leading_blanks(entry: &[u8]) -> &[u8] {
    let skip = entry
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &entry[skip..]
}

/// Number of data-area bytes `vars` take when serialized, list terminator included.
pub fn serialized_len(vars: &Vars) -> usize {
    vars.iter()
        .map(|(k, v)| k.len() + 1 + v.len() + 1)
        .sum::<usize>()
        + 1
}

/// Encodes `vars` into a block of `size` bytes. `flags` is written for [`Layout::Redundant`].
pub fn encode(vars: &Vars, size: usize, layout: Layout, flags: u8) -> Result<Vec<u8>, EncodeError> {
    let entries = vars.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    encode_with(entries, size, layout, flags, &ImageOptions::default())
}

/// Choices `mkenvimage` offers beyond the layout: padding byte and CRC byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageOptions {
    /// Byte filling the data area after the list terminator (mkenvimage `-p`, default 0xFF).
    pub pad: u8,
    /// Store the CRC big-endian (mkenvimage `-b`, for big-endian targets).
    pub big_endian: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            pad: 0xFF,
            big_endian: false,
        }
    }
}

/// Encodes entries **in the order given** (as `mkenvimage` keeps its input order; [`encode`]
/// passes sorted variables). Names and values are checked; duplicates are the caller's business.
pub fn encode_with<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    size: usize,
    layout: Layout,
    flags: u8,
    options: &ImageOptions,
) -> Result<Vec<u8>, EncodeError> {
    let mut needed = 1;
    for (name, value) in entries.clone() {
        check_name(name)?;
        check_stored_value(name, value)?;
        needed += name.len() + 1 + value.len() + 1;
    }
    let data_offset = layout.data_offset();
    let available = size.saturating_sub(data_offset);
    if needed > available {
        return Err(EncodeError::TooLarge { needed, available });
    }
    let mut block = vec![options.pad; size];
    let mut pos = data_offset;
    for (name, value) in entries {
        for part in [name.as_bytes(), b"=", value.as_bytes(), b"\0"] {
            block[pos..pos + part.len()].copy_from_slice(part);
            pos += part.len();
        }
    }
    block[pos] = 0;
    if layout == Layout::Redundant {
        block[CRC_LEN] = flags;
    }
    let crc = crc32(&block[data_offset..]);
    let crc = if options.big_endian {
        crc.to_be_bytes()
    } else {
        crc.to_le_bytes()
    };
    block[..CRC_LEN].copy_from_slice(&crc);
    Ok(block)
}

/// Which copy of a redundant pair is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// The copy at the first offset.
    First,
    /// The copy at the second offset.
    Second,
}

impl Active {
    /// Index of the copy: 0 or 1.
    pub fn index(self) -> usize {
        match self {
            Active::First => 0,
            Active::Second => 1,
        }
    }

    /// The copy that is not this one: where the next write goes.
    pub fn other(self) -> Active {
        match self {
            Active::First => Active::Second,
            Active::Second => Active::First,
        }
    }
}

impl fmt::Display for Active {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Active::First => "first",
            Active::Second => "second",
        })
    }
}

/// Picks the active copy from the flags of the copies whose CRC is valid (`None` = invalid),
/// by U-Boot's `env_check_redund` rule. Returns `None` when neither copy is valid.
pub fn choose_active(first: Option<u8>, second: Option<u8>) -> Option<Active> {
    match (first, second) {
        (None, None) => None,
        (Some(_), None) => Some(Active::First),
        (None, Some(_)) => Some(Active::Second),
        (Some(255), Some(0)) => Some(Active::Second),
        (Some(0), Some(255)) => Some(Active::First),
        (Some(a), Some(b)) if b > a => Some(Active::Second),
        (Some(_), Some(_)) => Some(Active::First),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_vector_single_ff_padding() {
        // A 32-byte single environment holding a=1, as mkenvimage writes it.
        let block = encode(&vars(&[("a", "1")]), 32, Layout::Single, 0).unwrap();
        assert_eq!(&block[..4], &0x419c_2188u32.to_le_bytes());
        assert_eq!(&block[4..8], b"a=1\0");
        assert_eq!(block[8], 0);
        assert!(block[9..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn zero_padding_is_accepted() {
        let mut block = vec![0u8; 32];
        block[4..8].copy_from_slice(b"a=1\0");
        let crc = crc32(&block[4..]);
        assert_eq!(crc, 0x374d_783b);
        block[..4].copy_from_slice(&crc.to_le_bytes());
        let d = decode(&block, Layout::Single).unwrap();
        assert_eq!(d.vars, vars(&[("a", "1")]));
        assert_eq!(d.flags, None);
    }

    #[test]
    fn round_trip_redundant_keeps_flags_and_sorts() {
        let v = vars(&[("zeta", "last"), ("alpha", "first"), ("m", "a b\\c")]);
        let block = encode(&v, 0x400, Layout::Redundant, 7).unwrap();
        assert_eq!(block[4], 7);
        assert_eq!(&block[5..16], b"alpha=first");
        let d = decode(&block, Layout::Redundant).unwrap();
        assert_eq!(d.vars, v);
        assert_eq!(d.flags, Some(7));
    }

    #[test]
    fn crc_mismatch_is_reported() {
        let mut block = encode(&vars(&[("a", "1")]), 64, Layout::Single, 0).unwrap();
        block[40] ^= 1;
        assert!(matches!(
            decode(&block, Layout::Single),
            Err(DecodeError::Crc { .. })
        ));
    }

    #[test]
    fn uboot_import_quirks() {
        let mut block = vec![0xFFu8; 128];
        let data = b"  lead=blank\0#comment=x\0noequals\0empty=\0ok=1\0\0junk=after\0";
        block[4..4 + data.len()].copy_from_slice(data);
        let crc = crc32(&block[4..]);
        block[..4].copy_from_slice(&crc.to_le_bytes());
        let d = decode(&block, Layout::Single).unwrap();
        assert_eq!(
            d.vars,
            vars(&[("empty", ""), ("lead", "blank"), ("ok", "1")])
        );
    }

    #[test]
    fn empty_values_survive_a_rewrite() {
        // bbb's default environment holds `bootdir=`: fwup, mkenvimage and libubootenv keep it.
        let v = vars(&[("bootdir", ""), ("x", "1")]);
        let block = encode(&v, 64, Layout::Redundant, 3).unwrap();
        assert_eq!(&block[5..17], b"bootdir=\0x=1");
        assert_eq!(decode(&block, Layout::Redundant).unwrap().vars, v);
        assert!(check_stored_value("a", "").is_ok());
        assert!(check_value("a", "").is_err());
    }

    #[test]
    fn unterminated_full_block_is_read_to_the_end() {
        let mut block = vec![0u8; 4 + 7];
        block[4..].copy_from_slice(b"abc=def");
        let crc = crc32(&block[4..]);
        block[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&block, Layout::Single).unwrap().vars,
            vars(&[("abc", "def")])
        );
    }

    #[test]
    fn too_large_is_refused() {
        let v = vars(&[("name", "0123456789")]);
        assert_eq!(
            encode(&v, 16, Layout::Single, 0),
            Err(EncodeError::TooLarge {
                needed: 17,
                available: 12
            })
        );
        // Exactly fitting works: 4 + "n=v\0" + "\0".
        assert!(encode(&vars(&[("n", "v")]), 9, Layout::Single, 0).is_ok());
    }

    #[test]
    fn bad_names_and_values() {
        assert_eq!(check_name(""), Err(NameError::EmptyName));
        assert!(matches!(
            check_name("a=b"),
            Err(NameError::BadNameChar {
                ch: '=',
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            check_name("a\u{7}"),
            Err(NameError::BadNameChar { index: 1, .. })
        ));
        assert!(matches!(
            check_name("a b"),
            Err(NameError::BadNameChar { .. })
        ));
        assert!(matches!(check_name("#x"), Err(NameError::CommentName(_))));
        assert!(check_name("a.nerves_fw_version").is_ok());
        assert!(matches!(
            check_value("x", ""),
            Err(NameError::EmptyValue(_))
        ));
        assert!(matches!(
            check_value("x", "a\0b"),
            Err(NameError::NulInValue { index: 1, .. })
        ));
    }

    #[test]
    fn active_copy_follows_uboot() {
        use Active::*;
        assert_eq!(choose_active(None, None), None);
        assert_eq!(choose_active(Some(3), None), Some(First));
        assert_eq!(choose_active(None, Some(3)), Some(Second));
        assert_eq!(choose_active(Some(1), Some(2)), Some(Second));
        assert_eq!(choose_active(Some(2), Some(1)), Some(First));
        assert_eq!(choose_active(Some(5), Some(5)), Some(First));
        assert_eq!(choose_active(Some(255), Some(0)), Some(Second));
        assert_eq!(choose_active(Some(0), Some(255)), Some(First));
        // Abnormal gap: U-Boot takes the larger value (fwup would not).
        assert_eq!(choose_active(Some(1), Some(200)), Some(Second));
    }

    #[test]
    fn ordered_encoding_with_pad_and_big_endian() {
        let opts = ImageOptions {
            pad: 0,
            big_endian: true,
        };
        let block = encode_with([("z", "1"), ("a", "2")], 32, Layout::Redundant, 1, &opts).unwrap();
        assert_eq!(&block[5..14], b"z=1\0a=2\0\0");
        assert!(block[14..].iter().all(|&b| b == 0));
        assert_eq!(block[4], 1);
        assert_eq!(&block[..4], &crc32(&block[5..]).to_be_bytes());
        // Sorted encode is the ordered one fed with sorted variables.
        let v = vars(&[("z", "1"), ("a", "2")]);
        assert_eq!(
            encode(&v, 64, Layout::Single, 0).unwrap(),
            encode_with(
                [("a", "2"), ("z", "1")],
                64,
                Layout::Single,
                0,
                &ImageOptions::default()
            )
            .unwrap()
        );
    }

    #[test]
    fn fwup_redundant_vector() {
        // fwup's redundant test: copy 0 has counter=257 with flags 1 and CRC 0x2414524e.
        let block = encode(&vars(&[("counter", "257")]), 0x400, Layout::Redundant, 1).unwrap();
        assert_eq!(&block[..4], &0x2414_524eu32.to_le_bytes());
        let block = encode(&vars(&[("counter", "256")]), 0x400, Layout::Redundant, 0).unwrap();
        assert_eq!(&block[..4], &0x4911_522du32.to_le_bytes());
    }
}
