//! The `loyalty` binary itself (its commands are exercised against real nodes in `tests/`;
//! this test also makes `cargo test --workspace` build it, which those tests run).

use std::process::Command;

#[test]
fn the_cli_lists_its_commands_and_refuses_an_unknown_one() {
    let bin = env!("CARGO_BIN_EXE_loyalty");
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "verify",
        "redeem-at-partner",
        "refund-at-partner",
        "reconcile",
    ] {
        assert!(
            help.contains(command),
            "`loyalty --help` lists {command}:\n{help}"
        );
    }
    let out = Command::new(bin).arg("no-such-command").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn verify_disk_without_the_disk_feature_says_how_to_get_it() {
    if cfg!(feature = "disk") {
        return;
    }
    let key = ledger::checkpoint::NoteSigner::from_seed("loyalty.example/brand-a", &[7; 32])
        .unwrap()
        .verifier_key_string();
    let replay = std::env::temp_dir().join(format!("loyalty-cli-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args([
            "--node",
            "http://127.0.0.1:9",
            "verify",
            "--log-key",
            &key,
            "--disk",
        ])
        .arg(&replay)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--features disk"), "{err}");
    assert!(!replay.exists(), "nothing was created");
}
