//! Size bands in channels.toml: a valid tiered channel resolves to ladders per instrument, and
//! every mistake is reported with its TOML path.

use pricefeed::config::Rules;
use pricefeed::pricing::{Amount, LadderPricing};
use rust_decimal::Decimal;

const BASE: &str = r#"
[instruments.EURUSD]
tick = "0.00001"
pip = "0.0001"
precision = 5
[instruments.ES]
tick = "0.25"
pip = "0.25"
precision = 2
[instruments.BTCUSD]
tick = "0.01"
pip = "1"
precision = 2
"#;

fn band(up_to: &str, bid: &str, ask: &str) -> String {
    format!(
        "{{ up_to = \"{up_to}\", markup = {{ unit = \"pips\", bid = \"{bid}\", ask = \"{ask}\" }} }}"
    )
}

#[test]
fn a_tiered_channel_resolves_a_ladder_per_instrument() {
    let text = format!(
        "{BASE}[channels.pro]\npricing = \"vwap\"\ntiers = [{}, {}]\n\
         [channels.pro.overrides]\nES = {{ unit = \"abs\", bid = \"0.25\", ask = \"0.25\" }}\n\
         BTCUSD = {{ tiers = [{}] }}\n",
        band("1000000", "0.2", "0.3"),
        band("5000000", "0.4", "0.3"),
        band("10", "2", "2"),
    );
    let rules = Rules::parse(&text, "t").expect("valid");
    let pro = rules.channel("pro").unwrap();
    let at = |s: &str| rules.instrument_index(s).unwrap();
    let eur = pro.ladders[at("EURUSD")]
        .as_ref()
        .expect("EURUSD is tiered");
    assert_eq!(eur.pricing, LadderPricing::Vwap);
    let sizes: Vec<Decimal> = eur.bands.iter().map(|b| b.up_to).collect();
    assert_eq!(sizes, [Decimal::from(1_000_000), Decimal::from(5_000_000)]);
    assert_eq!(eur.bands[1].rule.bid, Amount::Price(Decimal::new(4, 5)));
    // The top-of-book quote uses the first band's markup.
    assert_eq!(pro.rules[at("EURUSD")], Some(eur.bands[0].rule));
    // An override with a markup table takes the symbol off the ladder; one with tiers has its own.
    assert!(pro.ladders[at("ES")].is_none());
    assert_eq!(
        pro.rules[at("ES")].unwrap().bid,
        Amount::Price(Decimal::new(25, 2))
    );
    let btc = pro.ladders[at("BTCUSD")].as_ref().unwrap();
    assert_eq!(btc.bands.len(), 1);
    assert_eq!(btc.bands[0].rule.bid, Amount::Price(Decimal::from(2)));
}

#[test]
fn every_mistake_in_tiers_is_reported_with_its_path() {
    let ok1 = band("1000000", "0.2", "0.2");
    let seventeen: Vec<String> = (1..=17)
        .map(|i| band(&(i * 1000).to_string(), "1", "1"))
        .collect();
    let cases = [
        (
            format!("markup = {{ unit = \"pips\", bid = \"1\", ask = \"1\" }}\ntiers = [{ok1}]"),
            "channels.c.tiers: a channel has markup or tiers, not both",
        ),
        ("tiers = 5".into(), "channels.c.tiers: expected an array of bands"),
        ("tiers = []".into(), "channels.c.tiers: empty"),
        (
            format!("tiers = [{}]", seventeen.join(", ")),
            "channels.c.tiers: 17 bands: at most 16",
        ),
        (
            format!("tiers = [{}, {ok1}]", band("5000000", "0.1", "0.1")),
            "channels.c.tiers[1].up_to: 1000000 is not larger than channels.c.tiers[0].up_to (5000000): bands ascend by size",
        ),
        (
            format!(
                "tiers = [{ok1}, {{ up_to = \"2000000\", markup = {{ unit = \"bps\", bid = \"1\", ask = \"1\" }} }}]"
            ),
            "channels.c.tiers[1].markup.unit: differs from channels.c.tiers[0]'s",
        ),
        (
            format!("tiers = [{ok1}, {}]", band("2000000", "0.3", "0.1")),
            "channels.c.tiers[1].markup.ask: 0.1 is below channels.c.tiers[0]'s 0.2: a larger band never quotes tighter",
        ),
        (
            format!(
                "tiers = [{ok1}, {{ up_to = \"2000000\", markup = {{ unit = \"pips\", bid = \"0.2\", ask = \"0.2\", min_spread = \"-1\" }} }}]"
            ),
            "channels.c.tiers[1].markup.min_spread: negative amount -1",
        ),
        (
            "tiers = [{ up_to = 1e6, markup = { unit = \"pips\", bid = \"1\", ask = \"1\" } }]".into(),
            "channels.c.tiers[0].up_to: write decimals as strings",
        ),
        (
            "tiers = [{ up_to = \"0\", markup = { unit = \"pips\", bid = \"1\", ask = \"1\" } }]".into(),
            "channels.c.tiers[0].up_to: must be positive, found 0",
        ),
        (
            "tiers = [{ up_to = \"2000000000000000\", markup = { unit = \"pips\", bid = \"1\", ask = \"1\" } }]".into(),
            "channels.c.tiers[0].up_to: 2000000000000000 is larger than the maximum",
        ),
        (
            "tiers = [{ up_to = \"1\" }]".into(),
            "channels.c.tiers[0].markup: missing",
        ),
        (
            "tiers = [{ up_to = \"1\", size = 2, markup = { unit = \"pips\", bid = \"1\", ask = \"1\" } }]".into(),
            "channels.c.tiers[0].size: unknown key (expected one of: up_to, markup)",
        ),
        (
            format!("pricing = \"twap\"\ntiers = [{ok1}]"),
            "channels.c.pricing: \"twap\" is not one of: full_amount, vwap",
        ),
        (
            "pricing = \"vwap\"\nmarkup = { unit = \"pips\", bid = \"1\", ask = \"1\" }".into(),
            "channels.c.pricing: has no effect without tiers",
        ),
        (
            "markup = { unit = \"pips\", bid = \"1\", ask = \"1\" }\noverrides.ES = { tiers = [{ markup = { unit = \"abs\", bid = \"1\", ask = \"1\" } }] }".into(),
            "channels.c.overrides.ES.tiers[0].up_to: missing",
        ),
        (
            format!("markup = {{ unit = \"pips\", bid = \"1\", ask = \"1\" }}\noverrides.ES = {{ tiers = [{ok1}], unit = \"pips\" }}"),
            "channels.c.overrides.ES.unit: unknown key (expected one of: tiers)",
        ),
        (
            String::new(),
            "channels.c.markup: missing, e.g. markup = { unit = \"pips\", bid = \"0.5\", ask = \"0.5\" } (or tiers = [...] for size bands)",
        ),
    ];
    for (channel, expected) in cases {
        let text = format!("{BASE}[channels.c]\n{channel}\n");
        let errors = Rules::parse(&text, "t").expect_err(expected).to_string();
        assert!(errors.contains(expected), "want {expected:?} in:\n{errors}");
    }
}

#[test]
fn several_tier_mistakes_are_reported_together() {
    let text = format!(
        "{BASE}[channels.c]\ntiers = [{}, {}, {}]\n",
        band("2", "1", "1"),
        band("1", "0.5", "1"),
        band("3", "1", "0.5"),
    );
    let errors = Rules::parse(&text, "t").unwrap_err();
    let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "channels.c.tiers[1].up_to",
            "channels.c.tiers[1].markup.bid",
            "channels.c.tiers[2].markup.ask",
        ]
    );
}
