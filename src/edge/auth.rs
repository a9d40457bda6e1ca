//! Who a client is and what it may see: JWT verification (HS256, RS256, ES256; `alg: none` and
//! any algorithm other than the configured one are refused) into a [`Grant`], and the API keys
//! backends use to publish over HTTP.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthSettings, JwtAlgorithm};

/// The claims pricefeed reads from a token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Channels the user may subscribe to; `"*"` means all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// When present, the only symbols the user may see (on every allowed channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbols: Option<Vec<String>>,
    /// May publish raw prices.
    #[serde(default)]
    pub publish: bool,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch (RFC 7519 §4.1.5): refused until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// A ceiling the client cannot raise: at most this many updates per second per symbol on
    /// every subscription (an entitlement class, e.g. 0.2 for a delayed tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// What a verified token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    /// `None`: every channel.
    pub channels: Option<Vec<String>>,
    /// `None`: every symbol.
    pub symbols: Option<Vec<String>>,
    pub publish: bool,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
    /// The token's `max_rate`, as the shortest interval between two prices of a symbol.
    pub min_interval: Option<std::time::Duration>,
}

impl Grant {
    pub fn may_see_channel(&self, channel: &str) -> bool {
        self.channels
            .as_ref()
            .is_none_or(|c| c.iter().any(|c| c == channel))
    }

    pub fn may_see_symbol(&self, symbol: &str) -> bool {
        self.symbols
            .as_ref()
            .is_none_or(|s| s.iter().any(|s| s == symbol))
    }
}

/// Why a token was refused; the text goes to the client (it never contains the token).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet (nbf lies in the future)")]
    NotYetValid,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token algorithm {0} is not accepted (this edge accepts {1})")]
    WrongAlgorithm(String, &'static str),
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token claims are invalid: {0}")]
    BadClaims(String),
}

impl AuthError {
    /// The `reason` label of `pricefeed_edge_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongAlgorithm(..) => "wrong_algorithm",
            AuthError::Malformed(_) => "malformed",
            AuthError::BadClaims(_) => "bad_claims",
        }
    }
}

/// Cannot build a verifier from the settings (missing secret, unreadable key).
#[derive(Debug, thiserror::Error)]
#[error("auth setup: {0}")]
pub struct AuthSetupError(pub String);

/// The HS256 secret: `given` by the embedding program, or from the environment variable
/// `[auth] secret_env`.
pub fn hs256_secret(s: &AuthSettings, given: Option<&str>) -> Result<String, AuthSetupError> {
    match given {
        Some(secret) => Ok(secret.to_string()),
        None => std::env::var(&s.secret_env).map_err(|_| {
            AuthSetupError(format!(
                "the environment variable {} (auth.secret_env) must hold the HS256 secret",
                s.secret_env
            ))
        }),
    }
}

/// Verifies tokens with the configured algorithm and key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: JwtAlgorithm,
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    }
}

fn algorithm_name(a: JwtAlgorithm) -> &'static str {
    match a {
        JwtAlgorithm::Hs256 => "HS256",
        JwtAlgorithm::Rs256 => "RS256",
        JwtAlgorithm::Es256 => "ES256",
    }
}

/// Shortest HS256 secret accepted: 256 bits, as RFC 7518 §3.2 requires.
const MIN_SECRET_BYTES: usize = 32;

impl Verifier {
    /// Reads the secret (`secret` when the embedding program gives it, else the environment) or
    /// the public key (file, relative to `config_dir`).
    pub fn from_settings(
        s: &AuthSettings,
        config_dir: &Path,
        secret: Option<&str>,
    ) -> Result<Verifier, AuthSetupError> {
        let key = match s.algorithm {
            JwtAlgorithm::Hs256 => {
                let secret = hs256_secret(s, secret)?;
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(AuthSetupError(format!(
                        "the HS256 secret in {} is {} bytes; at least {MIN_SECRET_BYTES} are needed",
                        s.secret_env,
                        secret.len()
                    )));
                }
                DecodingKey::from_secret(secret.as_bytes())
            }
            JwtAlgorithm::Rs256 | JwtAlgorithm::Es256 => {
                let file = s.public_key_file.as_deref().unwrap_or_default();
                let path = config_dir.join(file);
                let pem = std::fs::read(&path).map_err(|e| {
                    AuthSetupError(format!(
                        "reading {} (auth.public_key_file): {e}",
                        path.display()
                    ))
                })?;
                let key = if s.algorithm == JwtAlgorithm::Rs256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                key.map_err(|e| {
                    AuthSetupError(format!(
                        "{} is not a PEM {} public key: {e}",
                        path.display(),
                        algorithm_name(s.algorithm)
                    ))
                })?
            }
        };
        Ok(Verifier::with_key(key, s))
    }

    /// An HS256 verifier with this secret (the settings give issuer, audience, leeway).
    pub fn hs256(secret: &[u8], s: &AuthSettings) -> Verifier {
        let s = AuthSettings {
            algorithm: JwtAlgorithm::Hs256,
            ..s.clone()
        };
        Verifier::with_key(DecodingKey::from_secret(secret), &s)
    }

    fn with_key(key: DecodingKey, s: &AuthSettings) -> Verifier {
        let mut validation = Validation::new(algorithm(s.algorithm));
        validation.leeway = s.leeway_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &s.issuer {
            validation.set_issuer(&[iss]);
        }
        match &s.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Verifier {
            key,
            validation,
            algorithm: s.algorithm,
        }
    }

    /// Checks signature, algorithm, expiry and claims.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        // Look at the header first so `alg: none` and algorithm confusion get a clear answer.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) if header_alg(token).is_some() => AuthError::WrongAlgorithm(
                header_alg(token).unwrap_or_default(),
                algorithm_name(self.algorithm),
            ),
            _ => AuthError::Malformed(e.to_string()),
        })?;
        if header.alg != algorithm(self.algorithm) {
            return Err(AuthError::WrongAlgorithm(
                format!("{:?}", header.alg),
                algorithm_name(self.algorithm),
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidIssuer => AuthError::BadClaims("wrong issuer".into()),
                ErrorKind::InvalidAudience => AuthError::BadClaims("wrong audience".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::BadClaims(format!("missing claim {c}"))
                }
                ErrorKind::Json(e) => AuthError::BadClaims(e.to_string()),
                _ => AuthError::Malformed(e.to_string()),
            },
        )?;
        let c = data.claims;
        if c.sub.is_empty() {
            return Err(AuthError::BadClaims("sub is empty".into()));
        }
        let min_interval = match c.max_rate {
            Some(rate) => Some(
                crate::edge::connection::throttle::interval(rate)
                    .map_err(|why| AuthError::BadClaims(why.replace("maxRate", "max_rate")))?,
            ),
            None => None,
        };
        Ok(Grant {
            user: c.sub,
            channels: (!c.channels.iter().any(|c| c == "*")).then_some(c.channels),
            symbols: c.symbols,
            publish: c.publish,
            expires_at: c.exp,
            min_interval,
        })
    }
}

/// The `alg` of a token header that the JWT library cannot parse (e.g. `none`), for the message.
fn header_alg(token: &str) -> Option<String> {
    use base64_url::decode;
    let header = token.split('.').next()?;
    let bytes = decode(header)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_string)
}

/// Minimal base64url decoding (no padding) for reading a header's `alg`.
mod base64_url {
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0u32);
        for b in s.bytes() {
            let v = match b {
                b'A'..=b'Z' => b - b'A',
                b'a'..=b'z' => b - b'a' + 26,
                b'0'..=b'9' => b - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                b'=' => continue,
                _ => return None,
            };
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        Some(out)
    }
}

/// Signs an HS256 token (the `pricefeed token` command, demos and tests).
pub fn sign_hs256(claims: &Claims, secret: &[u8]) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

/// HTTP publish API keys: key → publisher name.
#[derive(Clone, Default)]
pub struct ApiKeys(HashMap<String, String>);

impl ApiKeys {
    /// Parses `name:key,name2:key2` (from the environment variable named in the config).
    pub fn parse(text: &str) -> Result<ApiKeys, AuthSetupError> {
        let mut map = HashMap::new();
        for (i, item) in text.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let Some((name, key)) = item.split_once(':') else {
                return Err(AuthSetupError(format!(
                    "API key #{} is not name:key",
                    i + 1
                )));
            };
            if name.is_empty() || key.len() < 16 {
                return Err(AuthSetupError(format!(
                    "API key #{} needs a name and a key of at least 16 characters",
                    i + 1
                )));
            }
            map.insert(key.to_string(), name.to_string());
        }
        Ok(ApiKeys(map))
    }

    pub fn from_env(var: &str) -> Result<ApiKeys, AuthSetupError> {
        match std::env::var(var) {
            Ok(text) => ApiKeys::parse(&text),
            Err(_) => Ok(ApiKeys::default()),
        }
    }

    /// The publisher name for a presented key (constant-time compare per stored key).
    pub fn publisher(&self, presented: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| constant_time_eq(k.as_bytes(), presented.as_bytes()))
            .map(|(_, name)| name.as_str())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
