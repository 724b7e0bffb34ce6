//! The set-up script `./x` (README, "Set-up: the two commands"): its detection run on this
//! machine, and its installing and refusing paths with a stand-in `dpkg-query` and `apt-get`.
//!
//! The script is what a newcomer and CI run first, so its detection must agree with the
//! machine, and where it cannot install it must say which packages to install by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The packages `./x test` needs, in the order it reports them.
const TEST_PACKAGES: [&str; 5] = [
    "libclang-dev",
    "protobuf-compiler",
    "chromium",
    "chromium-driver",
    "etcd-server",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../x")
}

fn run(args: &[&str], path_prefix: Option<&Path>, envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).args(args);
    if let Some(dir) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // The script's own overrides must not leak in from the caller's environment.
    for k in [
        "LOYALTY_CHROMIUM",
        "LOYALTY_CHROMEDRIVER",
        "LIBCLANG_PATH",
        "PROTOC",
        "LOYALTY_ETCD",
    ] {
        cmd.env_remove(k);
    }
    cmd.output().expect("bash runs ./x")
}

/// `(package, present)` for every `x: PKG: present|missing (...)` line of the output.
fn reported(out: &Output) -> Vec<(String, bool)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("x: ")?;
            let (pkg, state) = rest.split_once(": ")?;
            if state.starts_with("present (") {
                Some((pkg.to_owned(), true))
            } else if state.starts_with("missing (") {
                Some((pkg.to_owned(), false))
            } else {
                None
            }
        })
        .collect()
}

/// Whether dpkg says `pkg` is installed, or `None` without dpkg.
fn dpkg_installed(pkg: &str) -> Option<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

/// A directory with a `dpkg-query` that reports every package as not installed.
fn nothing_installed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_exe(&dir.path().join("dpkg-query"), "#!/bin/sh\nexit 1\n");
    dir
}

fn write_exe(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn check_reports_this_machines_packages_as_dpkg_sees_them() {
    let out = run(&["check", "test"], None, &[]);
    let seen = reported(&out);
    let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, TEST_PACKAGES, "output: {out:?}");
    for (pkg, present) in &seen {
        if let Some(installed) = dpkg_installed(pkg) {
            assert_eq!(*present, installed, "{pkg}: ./x check disagrees with dpkg");
        }
    }
    let all_present = seen.iter().all(|(_, p)| *p);
    assert_eq!(out.status.code(), Some(if all_present { 0 } else { 1 }));
    // The demo needs libclang and protoc (the node's etcd client is generated at build time).
    let demo = reported(&run(&["check", "demo"], None, &[]));
    let demo: Vec<&str> = demo.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(demo, ["libclang-dev", "protobuf-compiler"]);
}

#[test]
fn check_says_what_is_missing_and_fails() {
    let fake = nothing_installed();
    let out = run(&["check"], Some(fake.path()), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let seen = reported(&out);
    assert_eq!(
        seen,
        TEST_PACKAGES.map(|p| (p.to_owned(), false)).to_vec(),
        "{out:?}"
    );
}

#[test]
fn without_apt_get_setup_names_the_packages_to_install_by_hand() {
    let fake = nothing_installed();
    let none = fake.path().join("no-apt-get");
    let out = run(
        &["setup", "test"],
        Some(fake.path()),
        &[("X_APT_GET", &none)],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no apt-get")
            && err.contains(
                "apt-get install libclang-dev protobuf-compiler chromium chromium-driver etcd-server"
            ),
        "{err}"
    );
}

#[test]
fn setup_installs_only_what_is_missing_and_says_why() {
    let fake = nothing_installed();
    let log = fake.path().join("apt.log");
    let apt = fake.path().join("apt-get");
    write_exe(
        &apt,
        &format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    );
    let root = Command::new("id").arg("-u").output().unwrap();
    let out = run(
        &["setup", "demo"],
        Some(fake.path()),
        &[("X_APT_GET", &apt)],
    );
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        // Not root: the script installs only through password-less sudo, else it refuses.
        assert!(matches!(out.status.code(), Some(0) | Some(2)), "{out:?}");
        return;
    }
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "x: installing libclang-dev: RocksDB's Rust bindings are generated by bindgen"
        ),
        "{stdout}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        "update -qq\ninstall -y -qq libclang-dev protobuf-compiler\n"
    );
}

#[test]
fn an_unknown_job_or_command_is_a_usage_error() {
    for args in [
        &["check", "deploy"][..],
        &["setup", "deploy"],
        &["frobnicate"],
    ] {
        let out = run(args, None, &[]);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert!(reported(&out).is_empty(), "{args:?}: {out:?}");
    }
}
