//! The docker/ files, checked without a Docker engine (there is none on the dev machines): see
//! tests/browser/docker.mjs for what is checked.

use std::process::Command;

#[test]
fn the_docker_files_parse_and_agree_with_the_binary_and_each_other() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("node")
        .arg(format!("{root}/tests/browser/docker.mjs"))
        .arg(env!("CARGO_BIN_EXE_pricefeed"))
        .current_dir(root)
        .output()
        .expect("node (Node.js) must be installed; scripts/install-browser.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
