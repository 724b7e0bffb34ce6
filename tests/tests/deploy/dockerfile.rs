//! The Dockerfile, read into the instructions the deployment test checks. A small reader of
//! exactly the forms our Dockerfile uses (continuation lines, exec-form JSON arrays, `K=V`
//! environment), not a general one: an instruction it does not know is left out, and the
//! checks that need it then fail.

use std::collections::BTreeMap;

use super::read;

/// The instructions of the Dockerfile that this test checks, from its text.
pub struct Dockerfile {
    /// `FROM` images, in stage order.
    pub stages: Vec<String>,
    /// `RUN` commands.
    pub runs: Vec<String>,
    /// `COPY`: (`--from` stage or none, sources, destination).
    pub copies: Vec<(Option<String>, Vec<String>, String)>,
    /// `ENV` of the last stage.
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    pub volumes: Vec<String>,
    pub expose: Vec<u16>,
    pub healthcheck: Vec<String>,
    pub entrypoint: Vec<String>,
}

/// A JSON-array (exec form) argument list.
fn exec_form(s: &str) -> Vec<String> {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{s}: not in exec form ({e})"))
}

impl Dockerfile {
    pub fn parse() -> Dockerfile {
        let text = read("Dockerfile");
        let mut lines = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('#') || t.is_empty() {
                continue;
            }
            match t.strip_suffix('\\') {
                Some(head) => {
                    current.push_str(head);
                    current.push(' ');
                }
                None => {
                    current.push_str(t);
                    lines.push(std::mem::take(&mut current));
                }
            }
        }
        let mut d = Dockerfile {
            stages: Vec::new(),
            runs: Vec::new(),
            copies: Vec::new(),
            env: BTreeMap::new(),
            user: None,
            volumes: Vec::new(),
            expose: Vec::new(),
            healthcheck: Vec::new(),
            entrypoint: Vec::new(),
        };
        for line in lines {
            let (op, args) = line.split_once(' ').unwrap_or((&line, ""));
            let args = args.trim();
            match op.to_ascii_uppercase().as_str() {
                "FROM" => {
                    d.stages
                        .push(args.split_whitespace().next().unwrap_or("").to_owned());
                    d.env.clear();
                }
                "RUN" => d.runs.push(args.to_owned()),
                "COPY" => {
                    let mut from = None;
                    let mut paths = Vec::new();
                    for w in args.split_whitespace() {
                        if let Some(f) = w.strip_prefix("--from=") {
                            from = Some(f.to_owned());
                        } else if !w.starts_with("--") {
                            paths.push(w.to_owned());
                        }
                    }
                    let dest = paths.pop().expect("COPY has a destination");
                    d.copies.push((from, paths, dest));
                }
                "ENV" => {
                    for kv in args.split_whitespace() {
                        let (k, v) = kv.split_once('=').expect("ENV in K=V form");
                        d.env.insert(k.to_owned(), v.to_owned());
                    }
                }
                "USER" => d.user = Some(args.to_owned()),
                "VOLUME" => d.volumes.extend(exec_form(args)),
                "EXPOSE" => d.expose.extend(
                    args.split_whitespace()
                        .map(|p| p.trim_end_matches("/tcp").parse::<u16>().expect("a port")),
                ),
                "HEALTHCHECK" => {
                    let cmd = args.split_once("CMD").expect("HEALTHCHECK CMD").1;
                    d.healthcheck = exec_form(cmd);
                }
                "ENTRYPOINT" => d.entrypoint = exec_form(args),
                _ => {}
            }
        }
        d
    }

    /// Where a `COPY` from the build context puts `source`.
    pub fn destination_of(&self, source: &str) -> &str {
        self.copies
            .iter()
            .find(|(from, srcs, _)| from.is_none() && srcs.iter().any(|s| s == source))
            .map(|(_, _, dest)| dest.as_str())
            .unwrap_or_else(|| panic!("the Dockerfile does not copy {source}"))
    }
}

/// `(debian release, rust major.minor)` of a `rust:<version>-<release>` image.
pub fn rust_image(image: &str) -> ((u32, u32), String) {
    let tag = image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("the build stage {image} is not a rust image"));
    let (version, release) = tag
        .split_once('-')
        .unwrap_or_else(|| panic!("{image} names no Debian release"));
    let mut v = version
        .split('.')
        .map(|n| n.parse::<u32>().expect("a version"));
    (
        (v.next().expect("major"), v.next().expect("minor")),
        release.to_owned(),
    )
}
