//! The Docker deployment (`docker-compose.yml`, `Dockerfile`, `deploy/`), checked where no
//! container engine runs: the files are parsed and held against each other, against the node's
//! source (its `LOYALTY_*` overrides, its routes, its binaries) and against the built
//! `loyalty-node` itself (its subcommands and flags, its dynamic libraries). The module
//! `entrypoint` then runs `deploy/entrypoint.sh` for real, without a container, for three
//! brands on loopback.
//!
//! What this cannot check: that the image builds and the containers start under an engine
//! (base image tags, BuildKit, volume ownership, name resolution between services).
//!
//! Run through the workspace: `cargo test --workspace --test deploy`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use federation_tests::harness::node_bin;
use yaml_rust2::{Yaml, YamlLoader};

use dockerfile::{rust_image, Dockerfile};

#[path = "deploy/dockerfile.rs"]
mod dockerfile;
#[path = "deploy/entrypoint.rs"]
mod entrypoint;

/// The compose services and the brands they run, in host-port order.
const SERVICES: [&str; 3] = ["airline", "coffee", "gym"];
/// The host ports the services are published on, in the order of [`SERVICES`].
const HOST_PORTS: [u16; 3] = [7700, 7701, 7702];
/// The shared volume of published verifier keys.
const FEDERATION_VOLUME: &str = "federation";
/// Libraries that glibc (`libc6`) and `libgcc-s1` provide in every Debian image, slim ones too.
const BASE_LIBRARIES: &[&str] = &[
    "linux-vdso.so",
    "ld-linux-x86-64.so",
    "ld-linux-aarch64.so",
    "libc.so",
    "libm.so",
    "libpthread.so",
    "libdl.so",
    "librt.so",
    "libgcc_s.so",
];
/// Other libraries a binary may link, with the Debian package the runtime stage must install.
const LIBRARY_PACKAGES: &[(&str, &str)] = &[("libstdc++.so", "libstdc++6")];

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The compose file, parsed.
fn compose() -> Yaml {
    let mut docs =
        YamlLoader::load_from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    assert_eq!(docs.len(), 1, "docker-compose.yml holds one document");
    docs.remove(0)
}

/// A scalar as text (compose accepts numbers and booleans where it means strings).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(y: &Yaml, what: &str) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what} is a list"))
        .iter()
        .map(|v| scalar(v).unwrap_or_else(|| panic!("{what}: {v:?} is not a scalar")))
        .collect()
}

/// The keys of a mapping.
fn keys(y: &Yaml, what: &str) -> Vec<String> {
    y.as_hash()
        .unwrap_or_else(|| panic!("{what} is a mapping"))
        .keys()
        .map(|k| scalar(k).unwrap_or_else(|| panic!("{what}: key {k:?}")))
        .collect()
}

/// A service's environment, in either compose form (a mapping, or a list of `K=V`).
fn environment(service: &Yaml, name: &str) -> BTreeMap<String, String> {
    let env = &service["environment"];
    if let Some(h) = env.as_hash() {
        h.iter()
            .map(|(k, v)| {
                let k = scalar(k).expect("an environment name");
                let v = scalar(v).unwrap_or_else(|| panic!("{name}: {k} has no value"));
                (k, v)
            })
            .collect()
    } else {
        strings(env, &format!("{name}.environment"))
            .into_iter()
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{name}: {kv} is not K=V"));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }
}

/// A service's published ports as (host, container).
fn ports(service: &Yaml, name: &str) -> Vec<(u16, u16)> {
    strings(&service["ports"], &format!("{name}.ports"))
        .iter()
        .map(|p| {
            let parts: Vec<&str> = p.split(':').collect();
            let n = parts.len();
            assert!(n >= 2, "{name}: port {p} publishes no host port");
            let port = |s: &str| -> u16 {
                s.trim_end_matches("/tcp")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: port {p}"))
            };
            (port(parts[n - 2]), port(parts[n - 1]))
        })
        .collect()
}

/// A service's volumes as (source, target).
fn volumes(service: &Yaml, name: &str) -> Vec<(String, String)> {
    strings(&service["volumes"], &format!("{name}.volumes"))
        .iter()
        .map(|v| {
            let mut parts = v.split(':');
            let source = parts.next().unwrap_or_default().to_owned();
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("{name}: volume {v} has no target"))
                .to_owned();
            (source, target)
        })
        .collect()
}

/// The port of a `host:port` address.
fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{listen} has no port"))
}

/// The default of `${VAR:-default}` in a shell script.
fn script_default(script: &str, var: &str) -> String {
    let start = format!("${{{var}:-");
    let at = script
        .find(&start)
        .unwrap_or_else(|| panic!("the script reads no {var} with a default"));
    let rest = &script[at + start.len()..];
    rest[..rest.find('}').expect("a closing brace")].to_owned()
}

/// The routes the node's router serves (`.route("<path>", ...)` in any file of node/src).
fn routes() -> BTreeSet<String> {
    // Each module of the node exports its own routes (node/src/router.rs composes them).
    let mut files = vec![root().join("node/src")];
    let mut sources = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read node/src") {
                files.push(e.expect("a directory entry").path());
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            sources.push(std::fs::read_to_string(&p).expect("read a source file"));
        }
    }
    let mut routes = BTreeSet::new();
    for source in &sources {
        for piece in source.split(".route(").skip(1) {
            let piece = piece.trim_start();
            if let Some(rest) = piece.strip_prefix('"') {
                routes.insert(rest[..rest.find('"').expect("a closing quote")].to_owned());
            }
        }
    }
    assert!(
        routes.len() > 10,
        "found too few routes in node/src: {routes:?}"
    );
    routes
}

/// The compose healthcheck's probed path: the first argument of `test` that starts with `/`
/// and is not the program.
fn probed_path(args: &[String]) -> String {
    args.iter()
        .skip_while(|a| *a == "CMD" || *a == "CMD-SHELL")
        .skip(1)
        .find(|a| a.starts_with('/'))
        .cloned()
        .unwrap_or_else(|| panic!("the healthcheck {args:?} names no path"))
}

#[test]
fn compose_runs_three_brands_on_their_ports_pinned_to_each_other() {
    let compose = compose();
    let services = keys(&compose["services"], "services");
    assert_eq!(services, SERVICES, "the services, in order");
    let declared = keys(&compose["volumes"], "volumes");
    let script = read("deploy/entrypoint.sh");
    let data_dir = script_default(&script, "DEPLOY_DATA");
    let federation_dir = script_default(&script, "DEPLOY_FEDERATION");
    let mut data_volumes = BTreeSet::new();
    for (name, host_port) in SERVICES.iter().zip(HOST_PORTS) {
        let s = &compose["services"][*name];
        let env = environment(s, name);
        assert_eq!(env["LOYALTY_BRAND"], *name, "{name} runs brand {name}");
        let listen = &env["LOYALTY_LISTEN"];
        let port = port_of(listen);
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{name} listens on every interface of its container, not {listen}"
        );
        assert_eq!(
            ports(s, name),
            [(host_port, port)],
            "{name} publishes its listening port {port} on the host's {host_port}"
        );
        assert_eq!(
            env["LOYALTY_PUBLIC_URL"],
            format!("http://{name}:{port}"),
            "{name}'s partners reach it by service name on its listening port"
        );
        let partners: BTreeSet<&str> = env["DEPLOY_PARTNERS"]
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        let others: BTreeSet<&str> = SERVICES.iter().copied().filter(|s| s != name).collect();
        assert_eq!(partners, others, "{name} pins the two other brands");

        let mounts = volumes(s, name);
        let at = |target: &str| -> Vec<&String> {
            mounts
                .iter()
                .filter(|(_, t)| t == target)
                .map(|(src, _)| src)
                .collect()
        };
        let data = at(&data_dir);
        assert_eq!(data.len(), 1, "{name} mounts one volume at {data_dir}");
        assert!(
            data_volumes.insert(data[0].clone()),
            "{name} shares its data volume {}",
            data[0]
        );
        assert_eq!(
            at(&federation_dir),
            [FEDERATION_VOLUME],
            "{name} mounts the shared volume at {federation_dir}"
        );
        for (src, _) in &mounts {
            assert!(
                declared.contains(src),
                "{name} mounts {src}, which the file does not declare as a named volume"
            );
        }

        let check = strings(&s["healthcheck"]["test"], &format!("{name}.healthcheck"));
        assert_eq!(
            check.first().map(String::as_str),
            Some("CMD"),
            "{name}'s healthcheck runs a program, without a shell"
        );
        let path = probed_path(&check);
        assert!(
            routes().contains(&path),
            "{name}'s healthcheck probes {path}, which the node does not serve"
        );
    }
    assert!(declared.iter().any(|v| v == FEDERATION_VOLUME));
}

#[test]
fn compose_sets_only_variables_the_node_or_the_entrypoint_reads() {
    let compose = compose();
    let config = read("node/src/config.rs");
    let entrypoint = read("deploy/entrypoint.sh");
    let dockerfile = Dockerfile::parse();
    let mut vars: Vec<(String, String)> = dockerfile
        .env
        .keys()
        .map(|k| ("Dockerfile ENV".into(), k.clone()))
        .collect();
    for name in SERVICES {
        for k in environment(&compose["services"][name], name).into_keys() {
            vars.push((name.to_owned(), k));
        }
    }
    for (whom, var) in vars {
        if var.starts_with("LOYALTY_") {
            assert!(
                config.contains(&format!("\"{var}\"")),
                "{whom} sets {var}, which is not an override in node/src/config.rs"
            );
        } else {
            assert!(
                entrypoint.contains(&format!("${{{var}:-"))
                    && entrypoint.contains(&format!("#   {var} ")),
                "{whom} sets {var}, which deploy/entrypoint.sh neither reads nor documents"
            );
        }
    }
}

/// The `[[bin]]` names of the workspace's packages, by package.
fn workspace_bins() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    // The workspace's members, from its manifest: `members = ["ledger", "node", ...]`.
    let workspace = read("Cargo.toml");
    let members = workspace
        .lines()
        .find_map(|l| l.strip_prefix("members = "))
        .expect("the workspace lists its members on one line");
    let members: Vec<&str> = members
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.contains(&"node"), "members: {members:?}");
    for dir in members {
        let manifest = read(&format!("{dir}/Cargo.toml"));
        let mut package = None;
        let mut bins = BTreeSet::new();
        let mut section = "";
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_owned();
            match (section, k.trim()) {
                ("[package]", "name") => package = Some(v),
                ("[[bin]]", "name") => {
                    bins.insert(v);
                }
                _ => {}
            }
        }
        out.insert(package.expect("a package name"), bins);
    }
    out
}

#[test]
fn dockerfile_builds_and_ships_the_binaries_and_scripts_the_deployment_uses() {
    let d = Dockerfile::parse();
    assert_eq!(d.stages.len(), 2, "a build stage and a runtime stage");

    // The build stage: a Rust image no older than the workspace's rust-version, on the Debian
    // release of the runtime stage (same glibc and libstdc++).
    let ((major, minor), release) = rust_image(&d.stages[0]);
    let workspace = read("Cargo.toml");
    let msrv = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("the workspace's rust-version")
        .trim_matches('"');
    let (m0, m1) = msrv.split_once('.').expect("major.minor");
    assert!(
        (major, minor) >= (m0.parse().unwrap(), m1.parse().unwrap()),
        "the build image's Rust {major}.{minor} is older than rust-version {msrv}"
    );
    assert_eq!(
        d.stages[1],
        format!("debian:{release}-slim"),
        "the runtime stage is the slim image of the build stage's Debian release"
    );

    // The build: locked, release, and exactly the binaries the runtime stage copies.
    let build = d
        .runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    for flag in ["--release", "--locked"] {
        assert!(build.contains(flag), "cargo build without {flag}");
    }
    assert!(
        d.runs.iter().any(|r| r.contains("libclang-dev")),
        "the build stage installs libclang-dev for RocksDB's bindings"
    );
    let words: Vec<&str> = build.split_whitespace().collect();
    let after = |flag: &str| -> BTreeSet<String> {
        words
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].to_owned())
            .collect()
    };
    let packages = after("-p");
    let built = after("--bin");
    let bins = workspace_bins();
    for b in &built {
        assert!(
            packages
                .iter()
                .any(|p| bins.get(p).is_some_and(|s| s.contains(b))),
            "cargo build --bin {b}: no package given with -p has that binary ({bins:?})"
        );
    }
    for must in ["loyalty-node", "loyalty"] {
        assert!(built.contains(must), "the image does not build {must}");
    }
    let shipped: BTreeSet<String> = d
        .copies
        .iter()
        .filter(|(from, _, _)| from.as_deref() == Some("build"))
        .flat_map(|(_, srcs, _)| srcs.iter())
        .map(|s| s.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(shipped, built, "the runtime stage ships what was built");

    // Files copied from the context exist (scripts executable), and the entrypoint and the
    // healthcheck are those scripts.
    for (from, srcs, _) in &d.copies {
        if from.is_some() {
            continue;
        }
        for s in srcs.iter().filter(|s| *s != ".") {
            let path = root().join(s);
            assert!(path.is_file(), "COPY {s}: no such file");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert!(mode & 0o111 != 0, "{s} is not executable");
            }
        }
    }
    let program_of = |script: &str| -> String {
        let dest = d.destination_of(script);
        dest.rsplit('/').next().unwrap().to_owned()
    };
    assert_eq!(
        d.entrypoint,
        [program_of("deploy/entrypoint.sh")],
        "ENTRYPOINT runs deploy/entrypoint.sh"
    );
    assert_eq!(
        d.healthcheck.first(),
        Some(&program_of("deploy/healthcheck.sh")),
        "HEALTHCHECK runs deploy/healthcheck.sh"
    );
    assert!(
        routes().contains(&probed_path(&d.healthcheck)),
        "HEALTHCHECK probes {:?}, which the node does not serve",
        d.healthcheck
    );
    let compose = compose();
    for name in SERVICES {
        let test = strings(
            &compose["services"][name]["healthcheck"]["test"],
            "healthcheck",
        );
        assert_eq!(
            test[1..],
            d.healthcheck,
            "{name}'s healthcheck is the image's"
        );
    }

    // Runtime: not root; the data volume, the port and the directories the entrypoint uses.
    let user = d.user.as_deref().expect("a USER");
    assert!(
        !matches!(user, "root" | "0" | "0:0"),
        "the node runs as root"
    );
    let script = read("deploy/entrypoint.sh");
    let data_dir = script_default(&script, "DEPLOY_DATA");
    assert_eq!(
        d.volumes,
        std::slice::from_ref(&data_dir),
        "VOLUME is the data directory"
    );
    for var in ["DEPLOY_DATA", "DEPLOY_FEDERATION"] {
        if let Some(v) = d.env.get(var) {
            assert_eq!(*v, script_default(&script, var), "ENV {var}");
        }
    }
    let listen = &d.env["LOYALTY_LISTEN"];
    assert_eq!(
        d.expose,
        [port_of(listen)],
        "EXPOSE is LOYALTY_LISTEN's port"
    );
    assert!(
        d.runs
            .iter()
            .any(|r| r.contains(&data_dir) && r.contains("/federation") && r.contains("chown")),
        "the runtime stage creates {data_dir} and /federation owned by the node's user, so \
         named volumes start writable"
    );

    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        ".dockerignore keeps target/ out of the build context"
    );
}

#[test]
fn runtime_stage_installs_every_library_the_node_links() {
    let bin = node_bin();
    let out = Command::new("ldd")
        .arg(&bin)
        .output()
        .expect("run ldd (glibc's, on every Debian machine)");
    assert!(out.status.success(), "ldd {}", bin.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let d = Dockerfile::parse();
    let runtime_install = d
        .runs
        .iter()
        .rev()
        .find(|r| r.contains("apt-get install"))
        .expect("the runtime stage installs packages");
    for line in text.lines() {
        let lib = line.split_whitespace().next().unwrap_or_default();
        let lib = lib.rsplit('/').next().unwrap();
        if lib.is_empty() || BASE_LIBRARIES.iter().any(|b| lib.starts_with(b)) {
            continue;
        }
        let package = LIBRARY_PACKAGES
            .iter()
            .find(|(l, _)| lib.starts_with(l))
            .map(|(_, p)| *p)
            .unwrap_or_else(|| {
                panic!(
                    "loyalty-node links {lib}, which neither the base image nor a known \
                     package provides: install it in the runtime stage and list it here"
                )
            });
        assert!(
            runtime_install.split_whitespace().any(|w| w == package),
            "loyalty-node links {lib}: the runtime stage must install {package}"
        );
    }
}

/// The `loyalty-node` command lines in the entrypoint's code (comments left out): each as its
/// subcommand path and the flags it passes.
fn node_commands(script: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    for line in script.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for piece in line.split("loyalty-node ").skip(1) {
            let words: Vec<&str> = piece.split_whitespace().collect();
            let path: Vec<String> = words
                .iter()
                .take_while(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()))
                .map(|w| w.to_string())
                .collect();
            let flags: Vec<String> = words
                .iter()
                .filter(|w| w.starts_with("--"))
                .map(|w| {
                    w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                        .to_owned()
                })
                .collect();
            out.push((path, flags));
        }
    }
    out
}

#[test]
fn entrypoint_calls_only_subcommands_and_flags_the_node_has() {
    let script = read("deploy/entrypoint.sh");
    let commands = node_commands(&script);
    let paths: BTreeSet<String> = commands.iter().map(|(p, _)| p.join(" ")).collect();
    for must in ["init", "run"] {
        assert!(paths.contains(must), "the entrypoint never runs {must}");
    }
    let bin = node_bin();
    let help = |path: &[String]| -> String {
        let out = Command::new(&bin)
            .args(path)
            .arg("--help")
            .output()
            .expect("run loyalty-node --help");
        assert!(
            out.status.success(),
            "loyalty-node {} --help failed: {}",
            path.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&[]);
    for (path, flags) in commands {
        assert!(!path.is_empty(), "a loyalty-node call without a subcommand");
        assert!(
            top.lines()
                .any(|l| l.split_whitespace().next() == Some(path[0].as_str())),
            "loyalty-node has no subcommand {}:\n{top}",
            path[0]
        );
        let text = help(&path);
        for flag in flags {
            assert!(
                text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                "loyalty-node {} has no flag {flag}:\n{text}",
                path.join(" ")
            );
        }
    }
}
