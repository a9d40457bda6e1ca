//! Transform faults found by review, each reproduced on Apache Kafka with settings that make it
//! likely rather than lucky: a commit that runs ahead of acknowledged output, an expelled
//! ("zombie") worker that sends what it still held, and a channel added by a reload that is
//! written again below what another worker already wrote.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::reconcile::assert_reconciled;
use common::*;
use pricefeed::transform::resume::last_written;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// The group session Kafka allows at least (group.min.session.timeout.ms = 6 s by default).
const SESSION: &[&str] = &[
    "--kafka-option",
    "consumer.session.timeout.ms=6000",
    "--kafka-option",
    "consumer.heartbeat.interval.ms=1000",
];

fn config(prefix: &str, partitions: i32, channels: &str) -> String {
    format!(
        "{}{}{channels}",
        kafka_table(prefix, partitions),
        instruments(&["EURUSD", "GBPUSD"])
    )
}

const ALL: &str = r#"
[channels.all]
markup = { unit = "pips", bid = "0.2", ask = "0.3", min_spread = "0.5" }
"#;

fn args<'a>(extra: &[&'a [&'a str]]) -> Vec<&'a str> {
    extra.iter().flat_map(|a| a.iter().copied()).collect()
}

/// The raw offsets of `topic`'s records per partition, in the order they are stored.
fn raw_offsets(broker: &Broker, topic: &str, partitions: i32) -> HashMap<i32, Vec<i64>> {
    let mut out: HashMap<i32, Vec<i64>> = HashMap::new();
    for r in read_all(broker, topic, partitions) {
        out.entry(r.partition)
            .or_default()
            .push(r.header("pricefeed-raw-offset").parse().unwrap());
    }
    out
}

/// Every raw offset `0..n` once, in order.
fn assert_once_in_order(topic: &str, partition: i32, got: &[i64], n: i64) {
    let doubled = got.len() as i64 - n;
    let first_bad = got
        .iter()
        .enumerate()
        .find(|(i, o)| **o != *i as i64)
        .map(|(i, o)| format!("index {i} holds raw offset {o}"));
    assert!(
        got.len() as i64 == n && first_bad.is_none(),
        "{topic}/{partition}: {} records for {n} raw records ({doubled} extra); first out of \
         place: {}",
        got.len(),
        first_bad.unwrap_or_default()
    );
}

fn group_reader(broker: &Broker, group: &str) -> BaseConsumer {
    let mut c = settings(broker).reader_config();
    c.set("group.id", group);
    BaseConsumer::from_config(&c).unwrap()
}

/// The commit must never cover a raw record whose output Kafka has not acknowledged: a crash
/// right after such a commit loses the record for good (the resume rule starts at the commit).
/// With a long linger and a short commit interval every checkpoint waits ~300 ms for output
/// while raw records pile up, and the loop races through them right after the commit call.
/// Sampling the committed offset, then the output's end, must never find the commit ahead.
#[test]
fn the_committed_offset_never_runs_ahead_of_acknowledged_output() {
    let broker = Broker::start();
    let prefix = unique_prefix("commitrace");
    let partitions = 2;
    let (dir, path) = write_config(&config(&prefix, partitions, ALL));
    let worker = spawn_pricefeed(
        &broker,
        &path,
        &args(&[
            &["--kafka-option", "producer.linger.ms=300"],
            &["transform", "--commit-interval-ms", "20"],
        ]),
        dir.path(),
    );
    let mut feed = spawn_pricefeed(
        &broker,
        &path,
        &["simulate", "--rate", "3000", "--seed", "11"],
        dir.path(),
    );
    wait_ready(&worker, Duration::from_secs(60));

    let group = format!("{prefix}.raw.pricefeed-transform");
    let committed_reader = group_reader(&broker, &group);
    let output_reader = settings(&broker).reader().unwrap();
    let outputs = vec![format!("{prefix}.all")];
    let parts: Vec<i32> = (0..partitions).collect();
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition(&format!("{prefix}.raw"), *p);
    }
    let started = Instant::now();
    let (mut samples, mut ahead) = (0, Vec::new());
    while started.elapsed() < Duration::from_secs(15) {
        let committed = committed_reader
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .unwrap();
        // Read after the commit: everything the commit covers was acknowledged before it.
        let last = last_written(&output_reader, &outputs, &parts, Duration::from_secs(10)).unwrap();
        for e in committed.elements() {
            let Offset::Offset(c) = e.offset() else {
                continue;
            };
            let written = last
                .get(&(outputs[0].clone(), e.partition()))
                .map_or(0, |l| l + 1);
            if c > written {
                ahead.push(format!(
                    "partition {}: committed {c}, output holds raw offsets below {written}",
                    e.partition()
                ));
            }
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    feed.signal("TERM");
    let _ = feed.child.wait();
    let processed = worker.metric("pricefeed_raw_records_total").unwrap_or(0.0);
    eprintln!("{samples} samples, {processed} raw records processed");
    assert!(processed > 10_000.0, "the feed did not flow: {processed}");
    assert!(
        ahead.is_empty(),
        "{} of {samples} samples found the commit ahead of the acknowledged output, e.g. {:?}",
        ahead.len(),
        &ahead[..ahead.len().min(5)]
    );
}

/// A worker stopped past its session (SIGSTOP, a long GC-like stall) is expelled; another takes
/// its partition and rewrites what the outputs lack. When the stalled one resumes, the output
/// it still held must not reach Kafka: here all of it waits in the producer (a 60 s linger, no
/// checkpoint), so if it were flushed every record would be doubled.
#[test]
fn an_expelled_worker_drops_the_output_it_still_held() {
    let broker = Broker::start();
    let prefix = unique_prefix("zombie");
    let (dir, path) = write_config(&config(&prefix, 1, ALL));
    let raw = format!("{prefix}.raw");
    let output = format!("{prefix}.all");
    create_topic(&broker, &raw, 1);
    let zombie = spawn_pricefeed(
        &broker,
        &path,
        &args(&[
            SESSION,
            &["--kafka-option", "producer.linger.ms=60000"],
            &["transform", "--commit-interval-ms", "600000"],
        ]),
        dir.path(),
    );
    wait_ready(&zombie, Duration::from_secs(60));
    let feed = |count: &str, seed: &str| {
        let mut f = spawn_pricefeed(
            &broker,
            &path,
            &[
                "simulate", "--rate", "2000", "--count", count, "--seed", seed,
            ],
            dir.path(),
        );
        assert!(f.child.wait().unwrap().success(), "{}", f.log_text());
    };
    feed("300", "1");
    wait_for(
        Duration::from_secs(30),
        "the worker to take 300 records",
        || (zombie.metric("pricefeed_raw_records_total") == Some(300.0)).then_some(()),
    );
    assert!(
        read_all(&broker, &output, 1).is_empty(),
        "the output should still be lingering in the producer"
    );

    zombie.signal("STOP");
    let heir = spawn_pricefeed(
        &broker,
        &path,
        &args(&[SESSION, &["transform"]]),
        dir.path(),
    );
    wait_for(
        Duration::from_secs(60),
        "the heir to write 300 records",
        || (read_all(&broker, &output, 1).len() >= 300).then_some(()),
    );
    zombie.signal("CONT");
    // The zombie learns at its next heartbeat that it was expelled, then rejoins.
    wait_for(Duration::from_secs(60), "the zombie to notice", || {
        zombie
            .log_text()
            .contains("raw partitions revoked")
            .then_some(())
    });
    // The zombie stops for good (a shutdown flushes what its producer holds: nothing of the
    // dropped output may be in it). It could have won the partition back when it rejoined, and
    // with its 60 s linger the last records would then wait a minute in its producer: the heir
    // writes them.
    zombie.signal("TERM");
    let mut zombie = zombie;
    assert!(
        zombie.child.wait().unwrap().success(),
        "{}",
        zombie.log_text()
    );
    feed("100", "2");
    wait_for(Duration::from_secs(60), "the last 100 records", || {
        (read_all(&broker, &output, 1).len() >= 400).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    heir.signal("TERM");
    drop((zombie, heir));
    let got = raw_offsets(&broker, &output, 1);
    assert_once_in_order(&output, 0, got.get(&0).map_or(&[], |v| v), 400);
    assert_reconciled(&broker, &path, Duration::from_secs(10));
}

/// A reload that adds a channel while this worker replays records another worker already
/// priced with the new rules: the new channel must start above what is already there.
#[test]
fn a_channel_added_by_a_reload_is_not_written_again_below_its_end() {
    let broker = Broker::start();
    let prefix = unique_prefix("reloadfloor");
    let old = r#"
[channels.eur]
symbols = ["EURUSD"]
markup = { unit = "pips", bid = "1", ask = "1", min_spread = "2" }
"#;
    let new = format!("{old}{ALL}");
    let (dir, old_path) = write_config(&config(&prefix, 1, old));
    let new_path = dir.path().join("new.toml");
    std::fs::write(&new_path, config(&prefix, 1, &new)).unwrap();
    create_topic(&broker, &format!("{prefix}.raw"), 1);
    let output = format!("{prefix}.all");

    // Small batches (the simulator sends each record at once), so that a fetch of one batch
    // (below) is a record or two.
    let mut feed = spawn_pricefeed(
        &broker,
        &new_path,
        &[
            "simulate", "--rate", "1000", "--count", "4000", "--seed", "3",
        ],
        dir.path(),
    );
    assert!(feed.child.wait().unwrap().success(), "{}", feed.log_text());
    // A worker on the new rules prices it all, then dies before committing anything.
    let mut first = spawn_pricefeed(
        &broker,
        &new_path,
        &args(&[SESSION, &["transform", "--commit-interval-ms", "600000"]]),
        dir.path(),
    );
    wait_for(
        Duration::from_secs(60),
        "4000 records on the new channel",
        || (read_all(&broker, &output, 1).len() >= 4000).then_some(()),
    );
    first.kill9();

    // A worker still on the old rules replays from the start (nothing is committed), one
    // batch per fetch and a pause between fetches so that the replay takes seconds, and reloads
    // the new rules meanwhile.
    let second = spawn_pricefeed(
        &broker,
        &old_path,
        &args(&[
            SESSION,
            &["--kafka-option", "consumer.max.partition.fetch.bytes=1"],
            &["--kafka-option", "consumer.queued.min.messages=1"],
            &["--kafka-option", "consumer.fetch.queue.backoff.ms=10"],
            &["transform", "--no-watch"],
        ]),
        dir.path(),
    );
    wait_ready(&second, Duration::from_secs(60));
    std::fs::copy(&new_path, &old_path).unwrap();
    second.signal("HUP");
    let new_version = pricefeed::config::Rules::parse(&config(&prefix, 1, &new), "t")
        .unwrap()
        .version;
    let at_reload = wait_for(Duration::from_secs(30), "the reload", || {
        let m = second.metrics()?;
        m.contains(&new_version)
            .then(|| second.metric("pricefeed_raw_records_total").unwrap_or(0.0))
    });
    eprintln!("reloaded after {at_reload} of 4000 replayed records");
    assert!(
        at_reload < 3000.0,
        "the reload came too late in the replay to test anything ({at_reload} records)"
    );
    wait_for(Duration::from_secs(60), "the replay to finish", || {
        (second.metric("pricefeed_raw_records_total") >= Some(4000.0)).then_some(())
    });
    let mut more = spawn_pricefeed(
        &broker,
        &new_path,
        &[
            "simulate", "--rate", "1000", "--count", "100", "--seed", "4",
        ],
        dir.path(),
    );
    assert!(more.child.wait().unwrap().success());
    wait_for(Duration::from_secs(60), "the last records", || {
        (second.metric("pricefeed_raw_records_total") >= Some(4100.0)).then_some(())
    });
    second.signal("TERM");
    drop(second);
    let got = raw_offsets(&broker, &output, 1);
    assert_once_in_order(&output, 0, got.get(&0).map_or(&[], |v| v), 4100);
    assert_reconciled(&broker, &new_path, Duration::from_secs(10));
}

/// A worker waiting on a full producer queue does not poll, so it cannot learn that the group
/// has moved on (here: it exceeded `max.poll.interval.ms`, and the group gave its partition to
/// another worker). It must stop waiting once its assignment is lost and drop what it holds:
/// it used to wait until the queue drained (the 15 s linger), then write everything again.
#[test]
fn a_worker_stuck_on_a_full_queue_stops_once_its_partitions_are_gone() {
    let broker = Broker::start();
    let prefix = unique_prefix("queuefull");
    let (dir, path) = write_config(&config(&prefix, 1, ALL));
    let output = format!("{prefix}.all");
    create_topic(&broker, &format!("{prefix}.raw"), 1);
    let mut feed = spawn_pricefeed(
        &broker,
        &path,
        &[
            "simulate", "--rate", "2000", "--count", "200", "--seed", "5",
        ],
        dir.path(),
    );
    assert!(feed.child.wait().unwrap().success(), "{}", feed.log_text());
    let stuck = spawn_pricefeed(
        &broker,
        &path,
        &args(&[
            SESSION,
            &["--kafka-option", "consumer.max.poll.interval.ms=7000"],
            &["--kafka-option", "producer.queue.buffering.max.messages=5"],
            &["--kafka-option", "producer.linger.ms=15000"],
            &["transform", "--commit-interval-ms", "600000"],
        ]),
        dir.path(),
    );
    wait_for(
        Duration::from_secs(60),
        "the worker to fill its queue",
        || (stuck.metric("pricefeed_raw_records_total") >= Some(5.0)).then_some(()),
    );
    assert!(read_all(&broker, &output, 1).is_empty());
    let heir = spawn_pricefeed(
        &broker,
        &path,
        &args(&[SESSION, &["transform"]]),
        dir.path(),
    );
    wait_for(
        Duration::from_secs(60),
        "the stuck worker to let go",
        || {
            stuck
                .log_text()
                .contains("raw partitions revoked")
                .then_some(())
        },
    );
    // Once it has let go it would rejoin, take the partition back and get stuck again: it is
    // done here (its queue is held for 15 s, so anything it had not dropped would still be in
    // it and die with it; what the old wait did was deliver it after 15 s and go on).
    std::thread::sleep(Duration::from_secs(1));
    let mut stuck = stuck;
    stuck.kill9();
    wait_for(
        Duration::from_secs(60),
        "the heir to write 200 records",
        || (read_all(&broker, &output, 1).len() >= 200).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    heir.signal("TERM");
    drop(heir);
    let got = raw_offsets(&broker, &output, 1);
    assert_once_in_order(&output, 0, got.get(&0).map_or(&[], |v| v), 200);
    assert_reconciled(&broker, &path, Duration::from_secs(10));
}
