//! Token verification and API keys, case by case.

use super::*;

const SECRET: &str = "unit-test-secret-unit-test-secret-0123";

fn verifier() -> Verifier {
    // The production constructor, so what it validates is what these tests check.
    let settings = AuthSettings {
        leeway_s: 0,
        ..AuthSettings::default()
    };
    Verifier::hs256(SECRET.as_bytes(), &settings)
}

fn claims(exp: u64) -> Claims {
    Claims {
        sub: "alice".into(),
        channels: vec!["vip".into()],
        symbols: Some(vec!["EURUSD".into()]),
        publish: false,
        exp,
        nbf: None,
        max_rate: None,
        iss: None,
        aud: None,
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[test]
fn a_valid_token_gives_its_grant() {
    let t = sign_hs256(&claims(now() + 60), SECRET.as_bytes()).unwrap();
    let g = verifier().verify(&t).unwrap();
    assert_eq!(g.user, "alice");
    assert!(g.may_see_channel("vip") && !g.may_see_channel("retail"));
    assert!(g.may_see_symbol("EURUSD") && !g.may_see_symbol("GBPUSD"));
}

#[test]
fn expired_wrong_key_none_and_garbage_are_refused() {
    let v = verifier();
    let expired = sign_hs256(&claims(now() - 10), SECRET.as_bytes()).unwrap();
    assert_eq!(v.verify(&expired), Err(AuthError::Expired));
    let other = sign_hs256(&claims(now() + 60), b"another-secret-another-secret-0000").unwrap();
    assert_eq!(v.verify(&other), Err(AuthError::BadSignature));
    // alg: none, unsigned.
    let none = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
        "eyJzdWIiOiJtYWxsb3J5IiwiY2hhbm5lbHMiOlsiKiJdLCJleHAiOjQxMDI0NDQ4MDB9"
    );
    assert!(matches!(v.verify(&none), Err(AuthError::WrongAlgorithm(a, _)) if a == "none"));
    assert!(matches!(
        v.verify("not a token"),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn a_token_is_refused_before_its_nbf_and_accepted_from_it() {
    let v = verifier();
    let mut c = claims(now() + 7200);
    c.nbf = Some(now() + 3600);
    let early = sign_hs256(&c, SECRET.as_bytes()).unwrap();
    assert_eq!(v.verify(&early), Err(AuthError::NotYetValid));
    c.nbf = Some(now() - 1);
    let due = sign_hs256(&c, SECRET.as_bytes()).unwrap();
    assert_eq!(v.verify(&due).unwrap().user, "alice");
    // The leeway applies to nbf as it does to exp (clock skew between issuer and edge).
    let lenient = Verifier::hs256(SECRET.as_bytes(), &AuthSettings::default());
    c.nbf = Some(now() + 3);
    let skewed = sign_hs256(&c, SECRET.as_bytes()).unwrap();
    assert_eq!(lenient.verify(&skewed).unwrap().user, "alice");
}

#[test]
fn an_audience_may_be_an_array() {
    let mut c = claims(now() + 60);
    c.aud = Some(Audience::Many(vec!["pricefeed".into(), "other".into()]));
    let t = sign_hs256(&c, SECRET.as_bytes()).unwrap();
    let mut v = verifier();
    v.validation.validate_aud = true;
    v.validation.set_audience(&["pricefeed"]);
    assert_eq!(v.verify(&t).unwrap().user, "alice");
    v.validation.set_audience(&["elsewhere"]);
    assert!(matches!(v.verify(&t), Err(AuthError::BadClaims(_))));
}

#[test]
fn star_means_every_channel() {
    let mut c = claims(now() + 60);
    c.channels = vec!["*".into()];
    c.symbols = None;
    let t = sign_hs256(&c, SECRET.as_bytes()).unwrap();
    let g = verifier().verify(&t).unwrap();
    assert!(g.may_see_channel("anything") && g.may_see_symbol("XAUUSD"));
}

#[test]
fn es256_tokens_verify_with_the_public_key_file_and_hs256_ones_are_refused() {
    let key = rcgen::KeyPair::generate().unwrap(); // P-256, as ES256 uses
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwt.pub.pem"), key.public_key_pem()).unwrap();
    let settings = AuthSettings {
        algorithm: JwtAlgorithm::Es256,
        public_key_file: Some("jwt.pub.pem".into()),
        leeway_s: 0,
        ..AuthSettings::default()
    };
    let v = Verifier::from_settings(&settings, dir.path(), None).unwrap();
    let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let t = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(now() + 60),
        &signing,
    )
    .unwrap();
    assert_eq!(v.verify(&t).unwrap().user, "alice");
    // Algorithm confusion: an HS256 token (whatever its key) is not accepted by an ES256 edge.
    let hs = sign_hs256(&claims(now() + 60), key.public_key_pem().as_bytes()).unwrap();
    assert!(matches!(v.verify(&hs), Err(AuthError::WrongAlgorithm(a, "ES256")) if a == "HS256"));
    // A missing or unreadable key file is an error at start, not at the first client.
    let missing = AuthSettings {
        public_key_file: Some("nope.pem".into()),
        ..settings
    };
    assert!(Verifier::from_settings(&missing, dir.path(), None).is_err());
}

#[test]
fn rs256_tokens_verify_with_the_public_key_file_and_forgeries_are_refused() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let settings = AuthSettings {
        algorithm: JwtAlgorithm::Rs256,
        public_key_file: Some("rs256-test.pub.pem".into()),
        leeway_s: 0,
        ..AuthSettings::default()
    };
    let v = Verifier::from_settings(&settings, &root, None).unwrap();
    let private = std::fs::read(root.join("rs256-test.key.pem")).unwrap();
    let signing = EncodingKey::from_rsa_pem(&private).unwrap();
    let sign = |c: &Claims| jsonwebtoken::encode(&Header::new(Algorithm::RS256), c, &signing);
    let t = sign(&claims(now() + 60)).unwrap();
    assert_eq!(v.verify(&t).unwrap().user, "alice");
    // Expired, and tampered with (the claims changed under the same signature).
    assert!(v.verify(&sign(&claims(now() - 60)).unwrap()).is_err());
    let (head, rest) = t.split_once('.').unwrap();
    let signature = rest.rsplit_once('.').unwrap().1;
    let mut other = claims(now() + 60);
    other.channels = vec!["*".into()];
    let forged_claims = sign(&other).unwrap();
    let body = forged_claims.split('.').nth(1).unwrap();
    assert!(v.verify(&format!("{head}.{body}.{signature}")).is_err());
    // Algorithm confusion: an HS256 token keyed with the public key itself (which anyone
    // may have) is refused.
    let public = std::fs::read(root.join("rs256-test.pub.pem")).unwrap();
    let hs = sign_hs256(&claims(now() + 60), &public).unwrap();
    assert!(matches!(v.verify(&hs), Err(AuthError::WrongAlgorithm(a, "RS256")) if a == "HS256"));
    // A key file that is not an RSA public key is an error at start.
    let ec = rcgen::KeyPair::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rs256-test.pub.pem"), ec.public_key_pem()).unwrap();
    assert!(Verifier::from_settings(&settings, dir.path(), None).is_err());
}

#[test]
fn api_keys_parse_and_match() {
    let k = ApiKeys::parse("desk:0123456789abcdef0123, bot:fedcba9876543210fedc").unwrap();
    assert_eq!(k.publisher("0123456789abcdef0123"), Some("desk"));
    assert_eq!(k.publisher("0123456789abcdef0124"), None);
    assert!(ApiKeys::parse("nokey").is_err());
    assert!(ApiKeys::parse("short:abc").is_err());
}
