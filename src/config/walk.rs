//! A small walker over an untyped TOML tree that records every problem with its TOML path,
//! instead of stopping at the first one the way a derived `Deserialize` would.

use std::str::FromStr;

use rust_decimal::Decimal;
use toml::{Table, Value};

use super::errors::ConfigError;

/// Collects errors while the parser walks the tree.
#[derive(Default)]
pub(super) struct Walker {
    pub errors: Vec<ConfigError>,
}

/// `parent.key`, or `key` at the root. Keys that are not bare TOML keys are quoted.
pub(super) fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl Walker {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Reports every key of `table` not in `allowed`.
    pub fn only_keys(&mut self, path: &str, table: &Table, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    join(path, key),
                    format!("unknown key (expected one of: {})", allowed.join(", ")),
                );
            }
        }
    }

    pub fn table<'a>(&mut self, path: &str, value: &'a Value) -> Option<&'a Table> {
        match value {
            Value::Table(t) => Some(t),
            other => {
                self.error(
                    path,
                    format!("expected a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn string<'a>(&mut self, path: &str, value: &'a Value) -> Option<&'a str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.error(
                    path,
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Boolean(b) => Some(*b),
            other => {
                self.error(
                    path,
                    format!("expected true or false, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn integer(&mut self, path: &str, value: &Value, min: i64, max: i64) -> Option<i64> {
        match value {
            Value::Integer(i) if (min..=max).contains(i) => Some(*i),
            Value::Integer(i) => {
                self.error(path, format!("{i} is out of range ({min} to {max})"));
                None
            }
            other => {
                self.error(
                    path,
                    format!("expected an integer, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// An exact decimal: a string such as `"0.00001"`, or an integer. TOML floats are refused:
    /// they are binary and cannot hold most decimal prices exactly.
    pub fn decimal(&mut self, path: &str, value: &Value) -> Option<Decimal> {
        match value {
            Value::String(s) => {
                match Decimal::from_str(s.trim()).or_else(|_| Decimal::from_scientific(s.trim())) {
                    Ok(d) => Some(d.normalize()),
                    Err(_) => {
                        self.error(path, format!("{s:?} is not a decimal number"));
                        None
                    }
                }
            }
            Value::Integer(i) => Some(Decimal::from(*i)),
            Value::Float(f) => {
                self.error(
                    path,
                    format!(
                        "write decimals as strings, e.g. \"{f}\": a TOML float is binary and \
                         cannot hold most decimal prices exactly"
                    ),
                );
                None
            }
            other => {
                self.error(
                    path,
                    format!("expected a decimal string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A decimal in `(0, max]`.
    pub fn positive_decimal(&mut self, path: &str, value: &Value, max: Decimal) -> Option<Decimal> {
        let d = self.decimal(path, value)?;
        if d <= Decimal::ZERO {
            self.error(path, format!("must be positive, found {d}"));
            None
        } else if d > max {
            self.error(path, format!("{d} is larger than the maximum {max}"));
            None
        } else {
            Some(d)
        }
    }

    pub fn string_list<'a>(&mut self, path: &str, value: &'a Value) -> Option<Vec<&'a str>> {
        let Value::Array(items) = value else {
            self.error(
                path,
                format!("expected an array of strings, found {}", type_name(value)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(&format!("{path}[{i}]"), item) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

pub(super) fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
