//! Tokens of the libconfuse-style language fwup.conf and meta.conf are written in.
//!
//! ```text
//! blank      space, tab, carriage return (newline counts lines)
//! comment    `#` or `//` to the end of the line; `/* ... */`
//! symbols    `{` `}` `(` `)` `=` `+=` `,`
//! "string"   escapes \n \r \t \b \f \a \e \v \\ \" \ooo (octal) \xHH, `\` + newline joins
//!            lines, any other `\c` is `c` (so `\$` is a literal dollar); `${VAR}` and
//!            `${VAR:-default}` are replaced by the variable (nothing if unset)
//! 'string'   verbatim except `\\` and `\'`; no substitution
//! ${VAR}     outside quotes: a string token holding the variable's value
//! word       a run of characters other than blanks, newline, # " ' = { } ( ) + , *
//! ```
//!
//! Any other character (`;`, a lone `+` or `*`) is skipped, as libconfuse's scanner does.
//! Substitution happens while scanning, with the variables as they are at that point of the
//! file: a `define()` earlier in the file is visible to every token after it.

use super::{ConfigError, Span};
use std::sync::Arc;

/// One token with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A word, a quoted string or a substituted variable.
    Str(String),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `=`
    Eq,
    /// `+=`
    PlusEq,
    /// `,`
    Comma,
    /// End of this file.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Str(s) => format!("'{s}'"),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Eq => "'='".into(),
            Tok::PlusEq => "'+='".into(),
            Tok::Comma => "','".into(),
            Tok::Eof => "end of file".into(),
        }
    }
}

/// Scanner over one file's text.
pub struct Lexer {
    src: Vec<u8>,
    pos: usize,
    line: u32,
    file: Arc<str>,
}

/// Looks a variable up while scanning.
pub trait Lookup {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

fn is_word_byte(b: u8) -> bool {
    !matches!(
        b,
        b' ' | b'\t'
            | b'\n'
            | b'\r'
            | b'#'
            | b'"'
            | b'\''
            | b'='
            | b'{'
            | b'}'
            | b'('
            | b')'
            | b'+'
            | b','
            | b'*'
    )
}

impl Lexer {
    /// A scanner over `src`, reporting positions in `file`.
    pub fn new(src: impl Into<Vec<u8>>, file: Arc<str>) -> Self {
        Lexer {
            src: src.into(),
            pos: 0,
            line: 1,
            file,
        }
    }

    /// The file this scanner reads.
    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// Position of the next character.
    pub fn span(&self) -> Span {
        Span::new(self.file.clone(), self.line)
    }

    fn err(&self, line: u32, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(Span::new(self.file.clone(), line), msg)
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    /// The next token and the line it starts on.
    pub fn next(&mut self, vars: &dyn Lookup) -> Result<(Tok, Span), ConfigError> {
        loop {
            let Some(b) = self.peek(0) else {
                return Ok((Tok::Eof, self.span()));
            };
            let line = self.line;
            let span = Span::new(self.file.clone(), line);
            match b {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                }
                b'#' => self.skip_line(),
                b'/' if self.peek(1) == Some(b'/') => self.skip_line(),
                b'/' if self.peek(1) == Some(b'*') => self.skip_block_comment(line)?,
                b'{' => return self.single(Tok::LBrace, span),
                b'}' => return self.single(Tok::RBrace, span),
                b'(' => return self.single(Tok::LParen, span),
                b')' => return self.single(Tok::RParen, span),
                b'=' => return self.single(Tok::Eq, span),
                b',' => return self.single(Tok::Comma, span),
                b'+' if self.peek(1) == Some(b'=') => {
                    self.pos += 2;
                    return Ok((Tok::PlusEq, span));
                }
                b'"' => {
                    self.pos += 1;
                    let s = self.double_quoted(vars, line)?;
                    return Ok((Tok::Str(s), span));
                }
                b'\'' => {
                    self.pos += 1;
                    let s = self.single_quoted(line)?;
                    return Ok((Tok::Str(s), span));
                }
                b'$' if self.peek(1) == Some(b'{') => {
                    if let Some(close) = self.src[self.pos + 2..].iter().position(|&c| c == b'}') {
                        let inner = self.src[self.pos + 2..self.pos + 2 + close].to_vec();
                        self.line += inner.iter().filter(|&&c| c == b'\n').count() as u32;
                        self.pos += close + 3;
                        let value = substitute(&inner, vars).unwrap_or_default();
                        return Ok((Tok::Str(value), span));
                    }
                    return self.word(span);
                }
                b if is_word_byte(b) => return self.word(span),
                // libconfuse silently eats anything else (`;`, a lone `+` or `*`).
                _ => self.pos += 1,
            }
        }
    }

    fn single(&mut self, tok: Tok, span: Span) -> Result<(Tok, Span), ConfigError> {
        self.pos += 1;
        Ok((tok, span))
    }

    fn skip_line(&mut self) {
        while let Some(b) = self.peek(0) {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    fn skip_block_comment(&mut self, line: u32) -> Result<(), ConfigError> {
        self.pos += 2;
        loop {
            match self.peek(0) {
                None => return Err(self.err(line, "unterminated comment")),
                Some(b'*') if self.peek(1) == Some(b'/') => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.pos += 1;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn word(&mut self, span: Span) -> Result<(Tok, Span), ConfigError> {
        let start = self.pos;
        while let Some(b) = self.peek(0) {
            if !is_word_byte(b) {
                break;
            }
            self.pos += 1;
        }
        let text = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
        Ok((Tok::Str(text), span))
    }

    fn double_quoted(&mut self, vars: &dyn Lookup, line: u32) -> Result<String, ConfigError> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek(0) else {
                return Err(self.err(line, "unterminated string constant"));
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                b'\n' => {
                    out.push(b'\n');
                    self.line += 1;
                    self.pos += 1;
                }
                b'$' if self.peek(1) == Some(b'{') => {
                    match self.src[self.pos + 2..].iter().position(|&c| c == b'}') {
                        Some(close) => {
                            let inner = self.src[self.pos + 2..self.pos + 2 + close].to_vec();
                            self.line += inner.iter().filter(|&&c| c == b'\n').count() as u32;
                            self.pos += close + 3;
                            if let Some(v) = substitute(&inner, vars) {
                                out.extend_from_slice(v.as_bytes());
                            }
                        }
                        None => {
                            out.push(b'$');
                            self.pos += 1;
                        }
                    }
                }
                b'\\' => {
                    let Some(c) = self.peek(1) else {
                        return Err(self.err(line, "unterminated string constant"));
                    };
                    self.pos += 2;
                    match c {
                        b'\n' => self.line += 1,
                        b'0'..=b'7' => {
                            let mut value = u32::from(c - b'0');
                            let mut digits = 1;
                            while digits < 3 {
                                match self.peek(0) {
                                    Some(d @ b'0'..=b'7') => {
                                        value = value * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                        digits += 1;
                                    }
                                    _ => break,
                                }
                            }
                            if matches!(self.peek(0), Some(b'0'..=b'9')) {
                                return Err(self.err(self.line, "bad escape sequence in string"));
                            }
                            let byte = u8::try_from(value).map_err(|_| {
                                self.err(self.line, format!("invalid octal escape \\{value:o}"))
                            })?;
                            out.push(byte);
                        }
                        b'8' | b'9' => {
                            return Err(self.err(self.line, "bad escape sequence in string"));
                        }
                        b'x' if matches!(self.peek(0), Some(h) if h.is_ascii_hexdigit()) => {
                            let mut value = 0u8;
                            let mut digits = 0;
                            while digits < 2 {
                                match self.peek(0) {
                                    Some(h) if h.is_ascii_hexdigit() => {
                                        value = value * 16 + hex_value(h);
                                        self.pos += 1;
                                        digits += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(value);
                        }
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'a' => out.push(7),
                        b'e' => out.push(27),
                        b't' => out.push(b'\t'),
                        b'v' => out.push(11),
                        other => out.push(other),
                    }
                }
                _ => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn single_quoted(&mut self, line: u32) -> Result<String, ConfigError> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek(0) else {
                return Err(self.err(line, "unterminated string constant"));
            };
            match b {
                b'\'' => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                b'\n' => {
                    out.push(b'\n');
                    self.line += 1;
                    self.pos += 1;
                }
                b'\\' => match self.peek(1) {
                    Some(b'\n') => {
                        self.line += 1;
                        self.pos += 2;
                    }
                    Some(c @ (b'\\' | b'\'')) => {
                        out.push(c);
                        self.pos += 2;
                    }
                    _ => {
                        out.push(b'\\');
                        self.pos += 1;
                    }
                },
                _ => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

fn hex_value(h: u8) -> u8 {
    match h {
        b'0'..=b'9' => h - b'0',
        b'a'..=b'f' => h - b'a' + 10,
        _ => h - b'A' + 10,
    }
}

/// Resolves the inside of `${...}`: `NAME` or `NAME:-default`.
fn substitute(inner: &[u8], vars: &dyn Lookup) -> Option<String> {
    let inner = String::from_utf8_lossy(inner);
    match inner.find(":-") {
        Some(colon) if inner[..colon].find(':').is_none() => {
            let name = &inner[..colon];
            vars.get(name)
                .or_else(|| Some(inner[colon + 2..].to_owned()))
        }
        _ => vars.get(&inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<String, String>);
    impl Lookup for Vars {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn lex(src: &str) -> Vec<Tok> {
        let vars = Vars(HashMap::from([("A".to_string(), "alpha".to_string())]));
        let mut l = Lexer::new(src, Arc::from("t.conf"));
        let mut out = Vec::new();
        loop {
            let (t, _) = l.next(&vars).unwrap();
            if t == Tok::Eof {
                return out;
            }
            out.push(t);
        }
    }

    fn s(v: &str) -> Tok {
        Tok::Str(v.into())
    }

    #[test]
    fn words_symbols_and_comments() {
        assert_eq!(
            lex("a = b # c\n// d\n/* e\n f */ g(h, i) { } x += y"),
            vec![
                s("a"),
                Tok::Eq,
                s("b"),
                s("g"),
                Tok::LParen,
                s("h"),
                Tok::Comma,
                s("i"),
                Tok::RParen,
                Tok::LBrace,
                Tok::RBrace,
                s("x"),
                Tok::PlusEq,
                s("y")
            ]
        );
    }

    #[test]
    fn quoted_strings_escapes_and_substitution() {
        assert_eq!(lex(r#""a\tb\"c\\d\x41\101""#), vec![s("a\tb\"c\\dAA")]);
        assert_eq!(lex(r#""${A}-${B}-${B:-def}""#), vec![s("alpha--def")]);
        assert_eq!(lex(r#""\${FWUP_META_UUID}""#), vec![s("${FWUP_META_UUID}")]);
        assert_eq!(lex("\"line\\\none\""), vec![s("lineone")]);
        assert_eq!(lex(r"'a\'b\\c\n${A}'"), vec![s(r"a'b\c\n${A}")]);
        assert_eq!(lex("${A} ${NONE}"), vec![s("alpha"), s("")]);
    }

    #[test]
    fn unquoted_words_keep_dots_slashes_and_dashes() {
        assert_eq!(
            lex("file-resource overlays/dwc2.dtbo { x = 0x83 }"),
            vec![
                s("file-resource"),
                s("overlays/dwc2.dtbo"),
                Tok::LBrace,
                s("x"),
                Tok::Eq,
                s("0x83"),
                Tok::RBrace
            ]
        );
    }

    #[test]
    fn line_numbers_follow_newlines() {
        let vars = Vars(HashMap::new());
        let mut l = Lexer::new("a\n\n\"x\ny\"\nb", Arc::from("f"));
        assert_eq!(l.next(&vars).unwrap().1.line, 1);
        assert_eq!(l.next(&vars).unwrap().1.line, 3);
        assert_eq!(l.next(&vars).unwrap().1.line, 5);
    }

    #[test]
    fn unterminated_string_is_an_error_with_its_line() {
        let vars = Vars(HashMap::new());
        let mut l = Lexer::new("a\n\"oops", Arc::from("f.conf"));
        l.next(&vars).unwrap();
        let e = l.next(&vars).unwrap_err();
        assert_eq!(e.to_string(), "f.conf:2: unterminated string constant");
    }
}
