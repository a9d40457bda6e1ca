//! Demo mode (`--demo`, `PRICEFEED_DEMO=1`): `GET /demo/session` hands anyone a short-lived
//! client token per channel, with the instruments the trading UI needs (pip sizes to show spreads
//! in pips). Off by default: with it on, every channel is open to whoever reaches the port.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use utoipa::ToSchema;

use crate::config::{AuthSettings, JwtAlgorithm, Rules};
use crate::edge::auth::{Audience, AuthSetupError, Claims, sign_hs256};

/// How long a demo token is valid; the UI fetches a new one when it reconnects.
pub const DEMO_TOKEN_TTL_S: u64 = 3600;

/// Signs demo tokens with the edge's own HS256 secret, so they pass its verifier.
pub struct DemoSigner {
    secret: Vec<u8>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl DemoSigner {
    pub fn from_settings(
        auth: &AuthSettings,
        secret: Option<&str>,
    ) -> Result<DemoSigner, AuthSetupError> {
        if auth.algorithm != JwtAlgorithm::Hs256 {
            return Err(AuthSetupError(
                "demo mode signs its own tokens and needs [auth] algorithm = \"HS256\"".into(),
            ));
        }
        let secret = crate::edge::auth::hs256_secret(auth, secret).map_err(|_| {
            AuthSetupError(format!(
                "demo mode needs the HS256 secret in {} (auth.secret_env)",
                auth.secret_env
            ))
        })?;
        Ok(DemoSigner {
            secret: secret.into_bytes(),
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
        })
    }

    /// A token for each of `channels` (user `demo-<channel>`, that channel only, no publish
    /// right), and the instruments each channel carries.
    pub fn session(&self, rules: &Rules, channels: &[String]) -> DemoSession {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = now + DEMO_TOKEN_TTL_S;
        let mut list: Vec<DemoChannel> = rules
            .channels
            .iter()
            .filter(|c| channels.contains(&c.name))
            .map(|c| {
                let claims = Claims {
                    sub: format!("demo-{}", c.name),
                    channels: vec![c.name.clone()],
                    symbols: None,
                    publish: false,
                    exp,
                    nbf: None,
                    max_rate: None,
                    iss: self.issuer.clone(),
                    aud: self.audience.clone().map(Audience::One),
                };
                DemoChannel {
                    name: c.name.clone(),
                    token: sign_hs256(&claims, &self.secret).unwrap_or_default(),
                    user: claims.sub,
                    expires_at: exp,
                    symbols: rules
                        .instruments
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| c.carries(*i))
                        .map(|(_, ins)| ins.symbol.clone())
                        .collect(),
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let instruments = rules
            .instruments
            .iter()
            .map(|i| {
                (
                    i.symbol.clone(),
                    DemoInstrument {
                        pip: i.pip.to_string(),
                        tick: i.tick.size().to_string(),
                        precision: i.precision,
                    },
                )
            })
            .collect();
        DemoSession {
            channels: list,
            instruments,
        }
    }
}

/// `GET /demo/session` (demo mode only).
#[derive(Serialize, ToSchema)]
pub struct DemoSession {
    pub channels: Vec<DemoChannel>,
    /// Every instrument by symbol.
    pub instruments: BTreeMap<String, DemoInstrument>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DemoChannel {
    pub name: String,
    /// `demo-<channel>`.
    pub user: String,
    /// An HS256 JWT for this channel only, without the publish right.
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// The symbols the channel carries.
    pub symbols: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DemoInstrument {
    /// Size of one pip, as a decimal string.
    pub pip: String,
    /// The price grid, as a decimal string.
    pub tick: String,
    /// Decimal places on the wire.
    pub precision: u32,
}
