//! `pricefeed token`: signs an HS256 client token with the secret named by `[auth] secret_env`
//! (demos, tests, operations).

use std::process::ExitCode;

use crate::config::Rules;

/// What the token grants.
pub struct TokenRequest {
    pub sub: String,
    pub channels: Vec<String>,
    pub symbols: Option<Vec<String>>,
    pub publish: bool,
    pub ttl: u64,
    pub max_rate: Option<f64>,
}

pub fn token(rules: &Rules, t: &TokenRequest) -> ExitCode {
    match mint(rules, t) {
        Ok(tok) => {
            println!("{tok}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Signs an HS256 token with the secret named by `[auth] secret_env`.
pub fn mint(rules: &Rules, t: &TokenRequest) -> Result<String, String> {
    use crate::config::JwtAlgorithm;
    use crate::edge::auth::{Audience, Claims, sign_hs256};
    if rules.auth.algorithm != JwtAlgorithm::Hs256 {
        return Err(format!(
            "pricefeed signs HS256 tokens only; this config verifies {:?} tokens, which your \
             identity provider issues",
            rules.auth.algorithm
        ));
    }
    let Ok(secret) = std::env::var(&rules.auth.secret_env) else {
        return Err(format!(
            "the environment variable {} (auth.secret_env) must hold the HS256 secret",
            rules.auth.secret_env
        ));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        sub: t.sub.clone(),
        channels: t.channels.clone(),
        symbols: t.symbols.clone(),
        publish: t.publish,
        exp: now + t.ttl,
        nbf: None,
        iss: rules.auth.issuer.clone(),
        aud: rules.auth.audience.clone().map(Audience::One),
        max_rate: t.max_rate,
    };
    if let Some(rate) = t.max_rate {
        crate::edge::connection::throttle::interval(rate)
            .map_err(|why| why.replace("maxRate", "--max-rate"))?;
    }
    sign_hs256(&claims, secret.as_bytes()).map_err(|e| format!("signing failed: {e}"))
}
