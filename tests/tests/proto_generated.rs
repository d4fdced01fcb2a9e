//! `silkgate_verify` keeps the prost code generated from `proto/` in the repository
//! (`verify/src/proto/silkgate.v1.rs`), so that crate builds without a protobuf compiler.
//! This test generates it again and fails when the committed copy differs, naming the
//! first line that does. `SILKGATE_BLESS=1 cargo test -p silkgate-tests --test
//! proto_generated` rewrites the copy.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn generate() -> String {
    let fds = protox::compile(["silkgate/v1/silkgate.proto"], [root().join("proto")]).expect("proto/ compiles");
    let out = tempfile::tempdir().unwrap();
    prost_build::Config::new().out_dir(out.path()).compile_fds(fds).expect("prost generates the messages");
    std::fs::read_to_string(out.path().join("silkgate.v1.rs")).unwrap()
}

#[test]
fn the_committed_messages_are_what_the_proto_generates() {
    let path = root().join("verify/src/proto/silkgate.v1.rs");
    let fresh = generate();
    if std::env::var_os("SILKGATE_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed.lines().zip(fresh.lines()).position(|(a, b)| a != b);
        let line = line.unwrap_or(committed.lines().count().min(fresh.lines().count())) + 1;
        panic!(
            "{} differs from what proto/ generates, first at line {line}: run \
             `SILKGATE_BLESS=1 cargo test -p silkgate-tests --test proto_generated` and commit the result",
            path.display()
        );
    }
}
