//! The scripts that install and run the local Apache Kafka fail clearly: without Java or Maven,
//! without Maven Central, with a setting the broker refuses (its own words are shown), and when
//! asked to start a second broker on a directory or port already in use. The happy path is what
//! every other broker-backed test stands on.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A copy of the install script and its pin in a fresh tree, so nothing is installed yet.
fn fresh_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts/kafka")).unwrap();
    for f in ["scripts/install-kafka.sh", "scripts/kafka/pom.xml"] {
        std::fs::copy(root().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// A PATH with the shell tools the script uses and, of java and mvn, only those named.
fn path_with(tools: &[&str], dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let basics = [
        "bash",
        "sed",
        "head",
        "tail",
        "dirname",
        "id",
        "mktemp",
        "rm",
        "grep",
        "ls",
        "du",
        "cut",
        "wc",
        "touch",
        "mv",
        "cp",
        "mkdir",
        "cat",
        "sha256sum",
        "flock",
    ];
    for t in basics.iter().chain(tools) {
        let found = Command::new("bash")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .unwrap();
        let target = String::from_utf8(found.stdout).unwrap();
        std::os::unix::fs::symlink(target.trim(), bin.join(t)).unwrap();
    }
    bin.display().to_string()
}

fn install(tree: &Path, path: &str, maven_opts: Option<&str>) -> Output {
    let mut cmd = Command::new(tree.join("scripts/install-kafka.sh"));
    cmd.env("PATH", path);
    if let Some(o) = maven_opts {
        cmd.env("MAVEN_OPTS", o);
    }
    cmd.output().unwrap()
}

#[test]
fn install_names_what_is_missing() {
    let tree = fresh_tree();
    let no_java = path_with(&[], tree.path());
    let out = install(tree.path(), &no_java, None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Java 17 or newer is needed") && text(&out).contains("not on PATH"),
        "{}",
        text(&out)
    );

    let tree = fresh_tree();
    let no_maven = path_with(&["java"], tree.path());
    let out = install(tree.path(), &no_maven, None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Maven (mvn) is needed"),
        "{}",
        text(&out)
    );
    assert!(!tree.path().join(".tools/kafka-4.1.1/libs").exists());
}

#[test]
fn install_says_when_maven_central_cannot_be_reached() {
    let tree = fresh_tree();
    // Maven's settings in a home of the test's own, with every repository mirrored to a port
    // where nothing listens (and an empty local repository, so nothing comes from a cache).
    let home = tree.path().join("home");
    std::fs::create_dir_all(home.join(".m2")).unwrap();
    std::fs::write(
        home.join(".m2/settings.xml"),
        "<settings><mirrors><mirror><id>nowhere</id><mirrorOf>*</mirrorOf>\
         <url>http://127.0.0.1:1/maven2</url></mirror></mirrors></settings>",
    )
    .unwrap();
    let opts = format!("-Duser.home={}", home.display());
    let out = install(tree.path(), &std::env::var("PATH").unwrap(), Some(&opts));
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("Maven Central cannot be reached") && t.contains("127.0.0.1:1"),
        "{t}"
    );
    assert!(
        !tree.path().join(".tools/kafka-4.1.1/.installed").exists(),
        "a failed install must not look installed"
    );
}

fn kafka_sh(args: &[&str]) -> Output {
    Command::new(root().join("scripts/kafka.sh"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_setting_the_broker_refuses_fails_with_the_brokers_own_words() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let me = std::process::id().to_string();
    let out = kafka_sh(&[
        "start",
        "--dir",
        d,
        "--owner-pid",
        &me,
        "--set",
        "num.io.threads=0",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("num.io.threads"), "{}", text(&out));
    kafka_sh(&["stop", "--dir", d]);
}

#[test]
fn a_second_broker_on_the_same_dir_or_port_is_refused() {
    let broker = common::Broker::start_own();
    let dir = tempfile::tempdir().unwrap();
    let port = broker.addr.rsplit(':').next().unwrap();
    let me = std::process::id().to_string();
    let out = kafka_sh(&[
        "start",
        "--dir",
        dir.path().to_str().unwrap(),
        "--port",
        port,
        "--owner-pid",
        &me,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("something already listens on 127.0.0.1:{port}")),
        "{}",
        text(&out)
    );
    let out = kafka_sh(&["start", "--dir", broker.dir().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("a broker already runs in"),
        "{}",
        text(&out)
    );
}
