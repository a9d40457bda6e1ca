//! Finds the source text of a JSON number (or any value) so it can be parsed as an exact decimal,
//! and parses it.
//!
//! simd-json turns non-integer numbers into `f64`, which cannot hold most decimal prices
//! exactly. When a price arrives as a bare JSON number we go back to the original bytes and take
//! the number's text instead. The input has already been validated as JSON by simd-json.

use rust_decimal::Decimal;

/// Text of the number value of the top-level `key`, or `None` when there is none.
/// With duplicate keys the last one wins, as in simd-json.
pub(super) fn number_text<'a>(json: &'a [u8], key: &str) -> Option<&'a str> {
    let text = value_text(json, key)?;
    let is_number = text
        .first()
        .is_some_and(|c| c.is_ascii_digit() || *c == b'-');
    if is_number {
        std::str::from_utf8(text).ok()
    } else {
        None
    }
}

/// The text of the value of the top-level `key` (the last one when repeated).
pub(super) fn value_text<'a>(json: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut s = Scanner::new(json);
    s.ws();
    if !s.eat(b'{') {
        return None;
    }
    let mut found = None;
    loop {
        s.ws();
        if s.eat(b'}') {
            return found;
        }
        let k = s.string()?;
        s.ws();
        if !s.eat(b':') {
            return None;
        }
        s.ws();
        let start = s.i;
        s.value()?;
        if k == key.as_bytes() {
            found = Some(&json[start..s.i]);
        }
        s.ws();
        if !s.eat(b',') {
            s.ws();
            return if s.eat(b'}') { found } else { None };
        }
    }
}

/// Strict JSON-number grammar (`-?digits[.digits][e[+-]digits]`), parsed exactly. Plain
/// numbers of up to 18 digits (every realistic price) take a single pass; longer ones and
/// exponents go through `rust_decimal`'s exact parsers.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let b = text.as_bytes();
    let negative = b.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    let mut scale = 0u32;
    let int_start = i;
    while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        digits += 1;
        i += 1;
    }
    if i == int_start {
        return None;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            digits += 1;
            scale += 1;
            i += 1;
        }
        if i == frac_start {
            return None;
        }
    }
    if i == b.len() && digits <= 18 {
        let m = mantissa as i64;
        return Some(Decimal::new(if negative { -m } else { m }, scale));
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start || i != b.len() {
            return None;
        }
        return Decimal::from_scientific(text).ok();
    }
    if i != b.len() {
        return None;
    }
    Decimal::from_str_exact(text).ok()
}

pub(super) struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0 }
    }

    /// The unread rest.
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.i.min(self.b.len())..]
    }

    pub fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    pub fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A string token; returns its raw (still escaped) contents.
    pub fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        loop {
            match self.b.get(self.i)? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some(&self.b[start..self.i - 1]);
                }
                _ => self.i += 1,
            }
        }
    }

    /// Skips any value.
    pub fn value(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.b.get(self.i)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                let start = self.i;
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::number_text;

    #[test]
    fn finds_number_text_at_the_top_level_only() {
        let j = br#"{"x":{"bid":9},"bid": 1.08412 ,"s":"a\"b","ask":-2e-3}"#;
        assert_eq!(number_text(j, "bid"), Some("1.08412"));
        assert_eq!(number_text(j, "ask"), Some("-2e-3"));
        assert_eq!(number_text(j, "s"), None);
        assert_eq!(number_text(j, "missing"), None);
    }

    #[test]
    fn last_duplicate_wins() {
        assert_eq!(number_text(br#"{"bid":1,"bid":2.5}"#, "bid"), Some("2.5"));
    }

    #[test]
    fn skips_nested_arrays_and_strings_with_brackets() {
        let j = br#"{"a":[1,{"b":"]}"}],"bid":3}"#;
        assert_eq!(number_text(j, "bid"), Some("3"));
    }
}
