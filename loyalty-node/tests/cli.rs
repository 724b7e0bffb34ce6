//! The `loyalty-node` binary has the node's commands and `demo` (this test also makes
//! `cargo test --workspace` build the binary, which the multi-node tests in `tests/` run).

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_loyalty-node"))
        .args(args)
        .output()
        .expect("run loyalty-node");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

#[test]
fn the_binary_has_the_node_commands_and_the_demo() {
    let h = help(&["--help"]);
    for command in ["init", "run", "backup", "keys", "clock", "demo"] {
        assert!(
            h.lines().any(|l| l.trim_start().starts_with(command)),
            "no {command} in:\n{h}"
        );
    }
    let demo = help(&["demo", "--help"]);
    for flag in ["--dir", "--exit-after-scenario", "--report"] {
        assert!(demo.contains(flag), "no {flag} in:\n{demo}");
    }
}
