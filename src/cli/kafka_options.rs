//! `--kafka-option KEY=VALUE[,KEY=VALUE…]`: any librdkafka option, parsed without ever echoing a
//! value (it may be a password).

/// The librdkafka options of one `--kafka-option` (or of `PRICEFEED_KAFKA_OPTIONS`).
#[derive(Clone)]
pub struct OptionList(pub Vec<(String, String)>);

/// `KEY=VALUE[,KEY=VALUE…]`. A comma starts a new option only when `KEY=` follows it, so values
/// may hold commas (`debug=broker,topic`). Empty items (`PRICEFEED_KAFKA_OPTIONS=`, a trailing
/// comma) are no option.
pub fn parse_options(s: &str) -> Result<OptionList, String> {
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for part in s.split(',') {
        let starts_option = part.split_once('=').is_some_and(|(k, _)| is_key(k.trim()));
        match (starts_option, out.last_mut()) {
            (true, _) => {
                let (k, v) = part.split_once('=').expect("checked");
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
            (false, _) if part.trim().is_empty() => {}
            (false, Some((_, v))) => {
                v.push(',');
                v.push_str(part.trim());
            }
            // The text is not quoted back: it may hold a password (`sasl.password:…`).
            (false, None) => {
                return Err(
                    "expected KEY=VALUE[,KEY=VALUE…]: the text before the first '=' is not an \
                     option name (letters, digits, '.', '_', '-'); the value is not shown, as it \
                     may hold a secret"
                        .to_string(),
                );
            }
        }
    }
    Ok(OptionList(out))
}

/// `--kafka-option`'s parser: clap's own error for a failed value quotes the value, and a Kafka
/// option may be a password, so a bad value gets an error that names the flag only.
#[derive(Clone)]
pub struct OptionsParser;

impl clap::builder::TypedValueParser for OptionsParser {
    type Value = OptionList;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<OptionList, clap::Error> {
        let fail = |why: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--kafka-option / PRICEFEED_KAFKA_OPTIONS: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| fail("not UTF-8"))?;
        parse_options(text).map_err(|why| fail(&why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Vec<(String, String)> {
        parse_options(s).unwrap().0
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_options_split_at_commas_that_start_a_new_key() {
        assert_eq!(
            opts("linger.ms=5, debug=broker,topic,msg ,acks=all"),
            kv(&[
                ("linger.ms", "5"),
                ("debug", "broker,topic,msg"),
                ("acks", "all")
            ])
        );
        assert_eq!(
            opts("sasl.jaas.config=a=b"),
            kv(&[("sasl.jaas.config", "a=b")])
        );
        assert_eq!(opts(""), kv(&[]));
        assert_eq!(opts(" , "), kv(&[]));
        assert_eq!(opts("linger.ms=5,"), kv(&[("linger.ms", "5")]));
        assert!(parse_options("linger.ms").is_err());
        assert!(parse_options("=5").is_err());
    }
}
