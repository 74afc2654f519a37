//! Integer expressions of `define-eval`.
//!
//! 64-bit signed integers written as in C (`42`, `0x2a`, `052`), the binary operators
//! `+ -` (lowest), `* /` (truncating), `^` (power, right-associative, exponent 0..=63), unary
//! `-`, parentheses, and dd(1)-style suffixes that multiply the number (or parenthesised value)
//! they follow: `c` 1, `w` 2, `b` 512, `kB` 1000, `K` 1024, `MB` 10^6, `M` 2^20, `GB` 10^9,
//! `G` 2^30. Blanks are ignored. Arithmetic wraps on overflow, as fwup's does.

use std::fmt;

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

fn err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(msg.into()))
}

/// Evaluates `expr`.
pub fn eval(expr: &str) -> Result<i64, EvalError> {
    let mut p = Eval {
        s: expr.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let v = p.expr(0)?;
    p.blanks();
    if p.pos != p.s.len() {
        return err(format!(
            "unexpected '{}' at offset {}",
            p.s[p.pos] as char, p.pos
        ));
    }
    Ok(v)
}

struct Eval<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Eval<'_> {
    fn blanks(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.blanks();
        self.s.get(self.pos).copied()
    }

    /// Binary operators with precedence >= `min`.
    fn expr(&mut self, min: u8) -> Result<i64, EvalError> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.peek() {
            let (prec, right) = match op {
                b'+' | b'-' => (2, false),
                b'*' | b'/' => (3, false),
                b'^' => (4, true),
                _ => break,
            };
            if prec < min {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(if right { prec } else { prec + 1 })?;
            lhs = match op {
                b'+' => lhs.wrapping_add(rhs),
                b'-' => lhs.wrapping_sub(rhs),
                b'*' => lhs.wrapping_mul(rhs),
                b'/' => {
                    if rhs == 0 {
                        return err("division by zero");
                    }
                    lhs.wrapping_div(rhs)
                }
                _ => {
                    if !(0..=63).contains(&rhs) {
                        return err("exponent out of range");
                    }
                    (0..rhs).fold(1i64, |acc, _| acc.wrapping_mul(lhs))
                }
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<i64, EvalError> {
        self.depth += 1;
        if self.depth > 64 {
            return err("expression nested too deeply");
        }
        let v = match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                self.expr(4).map(i64::wrapping_neg)
            }
            Some(b'(') => {
                self.pos += 1;
                let v = self.expr(0)?;
                if self.peek() != Some(b')') {
                    return err("missing ')'");
                }
                self.pos += 1;
                self.suffixes(v)
            }
            Some(c) if c.is_ascii_digit() => {
                let v = self.number()?;
                self.suffixes(v)
            }
            Some(c) => err(format!("unexpected '{}' at offset {}", c as char, self.pos)),
            None => err("unexpected end of expression"),
        };
        self.depth -= 1;
        v
    }

    fn number(&mut self) -> Result<i64, EvalError> {
        let s = self.s;
        let start = self.pos;
        let (radix, digits_start) = if s[start] == b'0'
            && matches!(s.get(start + 1), Some(b'x' | b'X'))
            && s.get(start + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            (16, start + 2)
        } else if s[start] == b'0' {
            (8, start)
        } else {
            (10, start)
        };
        let mut end = digits_start;
        while end < s.len() && (s[end] as char).is_digit(radix) {
            end += 1;
        }
        self.pos = end;
        let text = std::str::from_utf8(&s[digits_start..end]).unwrap_or("0");
        u64::from_str_radix(text, radix)
            .map(|v| v as i64)
            .or_else(|_| err(format!("number '{text}' out of range")))
    }

    fn suffixes(&mut self, mut v: i64) -> Result<i64, EvalError> {
        loop {
            let two = self.s.get(self.pos + 1).copied();
            let (mul, len): (i64, usize) = match self.s.get(self.pos) {
                Some(b'c') => (1, 1),
                Some(b'w') => (2, 1),
                Some(b'b') => (512, 1),
                Some(b'k') if two == Some(b'B') => (1000, 2),
                Some(b'K') => (1024, 1),
                Some(b'M') if two == Some(b'B') => (1_000_000, 2),
                Some(b'M') => (1 << 20, 1),
                Some(b'G') if two == Some(b'B') => (1_000_000_000, 2),
                Some(b'G') => (1 << 30, 1),
                _ => return Ok(v),
            };
            self.pos += len;
            v = v.wrapping_mul(mul);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        assert_eq!(eval("16 + 16").unwrap(), 32);
        assert_eq!(eval("2048 + 8192").unwrap(), 10240);
        assert_eq!(eval("1 + 2 * 3").unwrap(), 7);
        assert_eq!(eval("(1 + 2) * 3").unwrap(), 9);
        assert_eq!(eval("10 - 4 - 3").unwrap(), 3);
        assert_eq!(eval("7 / 2").unwrap(), 3);
        assert_eq!(eval("-7 / 2").unwrap(), -3);
        assert_eq!(eval("2 ^ 3 ^ 2").unwrap(), 512);
        assert_eq!(eval("-2 ^ 2").unwrap(), -4);
        assert_eq!(eval("0x10 + 010").unwrap(), 24);
        assert_eq!(
            eval("${X}".replace("${X}", "110080").as_str()).unwrap(),
            110080
        );
        assert_eq!(eval("2M / 512").unwrap(), 4096);
        assert_eq!(eval("1kB + 1K + 1b + 1w").unwrap(), 1000 + 1024 + 512 + 2);
        assert_eq!(eval("(1 + 1)K").unwrap(), 2048);
        assert_eq!(eval("4096 + 28672 - 1").unwrap(), 32767);
    }

    #[test]
    fn errors() {
        assert!(eval("").is_err());
        assert!(eval("1 +").is_err());
        assert!(eval("1 / 0").is_err());
        assert!(eval("(1").is_err());
        assert!(eval("1)").is_err());
        assert!(eval("abc").is_err());
        assert!(eval("2 ^ 64").is_err());
        assert!(eval("08").is_err());
    }
}
