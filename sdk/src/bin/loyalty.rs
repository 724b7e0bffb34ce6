//! `loyalty`: the command-line tool of the open loyalty ledger, for operators and auditors.
//! A thin shell over the `sdk` library: parse arguments, call one library function, print.
//!
//! Exit status: 0 on success; 1 when `verify` finds the log invalid (the first bad index is
//! printed); 2 when a command could not be carried out (bad arguments, network, an error
//! answer from the node).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use clap::{Args, Parser, Subcommand};
use sdk::verify::{Progress, VerifyError};
use sdk::{
    Client, CreateKeyRequest, EarnRequest, EntryId, MemberId, NoteVerifier, Points, RedeemRequest,
    Scope, VerifyOptions, WriteResult,
};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "loyalty",
    version,
    about = "Client of a loyalty-ledger brand node, and auditor of its log.",
    after_help = "Exit status: 0 on success, 1 when `verify` finds the log invalid, 2 on any other error."
)]
struct Cli {
    /// Base URL of the brand node, e.g. http://127.0.0.1:7700.
    #[arg(long, env = "LOYALTY_NODE", global = true)]
    node: Option<String>,
    /// API key for the app and admin commands (give it before the subcommand).
    #[arg(long = "key", env = "LOYALTY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Pin the log's C2SP verifier key: write receipts are then verified against it.
    #[arg(long = "log-key", env = "LOYALTY_LOG_KEY")]
    log_key: Option<NoteVerifier>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a member's balance, available and pending points, tier and lots.
    Balance {
        /// The member's pseudonymous id.
        member: MemberId,
    },
    /// Show a member's whole history, every page.
    History {
        /// The member's pseudonymous id.
        member: MemberId,
    },
    /// Credit points to a member.
    Earn {
        /// The member's pseudonymous id.
        member: MemberId,
        /// Points to credit.
        points: Points,
        /// Idempotency id; reuse it to retry safely. A random one is made if absent.
        #[arg(long)]
        id: Option<EntryId>,
        /// The points do not count towards tiers.
        #[arg(long)]
        non_qualifying: bool,
    },
    /// Spend a member's points.
    Redeem {
        /// The member's pseudonymous id.
        member: MemberId,
        /// Points to spend.
        points: Points,
        /// Idempotency id; reuse it to retry safely. A random one is made if absent.
        #[arg(long)]
        id: Option<EntryId>,
    },
    /// Manage API keys (needs an admin key).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Verify the node's whole log: signatures, Merkle roots, and a full replay.
    Verify(Box<VerifyArgs>),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// A name for people (which app uses the key).
        name: String,
        /// Scopes: read, earn, redeem, admin (repeat, or separate with commas).
        #[arg(long = "scope", required = true, num_args = 1.., value_delimiter = ',')]
        scopes: Vec<Scope>,
    },
    /// List keys.
    List,
    /// Revoke a key.
    Revoke {
        /// The key's id.
        key_id: String,
    },
}

#[derive(Args)]
struct VerifyArgs {
    /// The log's C2SP verifier key (`<origin>+<key id>+<base64 key>`), pinned out of band.
    #[arg(long = "log-key", visible_alias = "key", env = "LOYALTY_LOG_KEY")]
    log_key: NoteVerifier,
    /// A checkpoint saved by an earlier run: the log must extend it (it is still replayed
    /// from index 0).
    #[arg(long)]
    from_checkpoint: Option<PathBuf>,
    /// Where to save the latest checkpoint once the log verifies, to resume from next time.
    #[arg(long)]
    save_checkpoint: Option<PathBuf>,
    /// Entries between two progress lines on stderr.
    #[arg(long, default_value_t = 10_000)]
    progress_every: u64,
}

/// How a command ended, when it could be carried out.
enum Outcome {
    /// It did what was asked.
    Done,
    /// `verify` found the log invalid (already reported).
    LogInvalid,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::LogInvalid) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn client(cli: &Cli, api_key: bool) -> anyhow::Result<Client> {
    let node = cli
        .node
        .as_deref()
        .ok_or_else(|| anyhow!("no node given: pass --node URL or set LOYALTY_NODE"))?;
    let mut b = Client::builder(node);
    if api_key {
        if let Some(k) = &cli.api_key {
            b = b.api_key(k.clone());
        }
    }
    if let Some(v) = &cli.log_key {
        b = b.verifier(v.clone());
    }
    Ok(b.build()?)
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_write(w: &WriteResult, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({
            "status": w.status,
            "index": w.index,
            "entry": w.entry.to_value(),
            "receipt": w.receipt,
            "verified": w.is_verified(),
        }));
    }
    let status = match w.status {
        sdk::WriteStatus::Appended => "appended",
        sdk::WriteStatus::Existing => "already logged",
    };
    println!(
        "{status}: {} {} at index {}",
        w.entry.kind.type_name(),
        w.entry.id,
        w.index
    );
    match &w.checkpoint {
        Some(cp) => println!(
            "receipt verified against the signed checkpoint of size {}",
            cp.size
        ),
        None => println!("receipt not verified (no --log-key pinned)"),
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let json = cli.json;
    match &cli.command {
        Command::Balance { member } => {
            let m = client(&cli, true)?.member(member).await?;
            if json {
                return print_json(&m).map(|_| Outcome::Done);
            }
            println!("member:    {}", m.member);
            println!("balance:   {}", m.balance);
            println!("available: {}", m.available);
            println!("pending:   {}", m.pending);
            if let Some(t) = &m.tier {
                match m.tier_valid_until {
                    Some(u) => println!("tier:      {t} (until {u})"),
                    None => println!("tier:      {t}"),
                }
            }
            for l in &m.lots {
                match l.expires_at {
                    Some(e) => println!("lot {}: {} points, expires at {e}", l.lot, l.remaining),
                    None => println!("lot {}: {} points, never expires", l.lot, l.remaining),
                }
            }
        }
        Command::History { member } => {
            let items = client(&cli, true)?.history_all(member).await?;
            if json {
                return print_json(&items).map(|_| Outcome::Done);
            }
            for h in &items {
                let body = serde_json::to_string(&h.entry.kind.body_value())?;
                println!(
                    "{:>10}  {:>13}  {:<13} {:<24} {body}",
                    h.index,
                    h.entry.time,
                    h.entry.kind.type_name(),
                    h.entry.id
                );
            }
        }
        Command::Earn {
            member,
            points,
            id,
            non_qualifying,
        } => {
            let id = id.clone().unwrap_or_else(sdk::new_entry_id);
            let mut req = EarnRequest::new(id, *points);
            if *non_qualifying {
                req = req.non_qualifying();
            }
            let w = client(&cli, true)?.earn(member, &req).await?;
            print_write(&w, json)?;
        }
        Command::Redeem { member, points, id } => {
            let id = id.clone().unwrap_or_else(sdk::new_entry_id);
            let w = client(&cli, true)?
                .redeem(member, &RedeemRequest::new(id, *points))
                .await?;
            print_write(&w, json)?;
        }
        Command::Keys { command } => {
            let c = client(&cli, true)?;
            match command {
                KeysCommand::Create { name, scopes } => {
                    let k = c
                        .create_key(&CreateKeyRequest {
                            name: name.clone(),
                            scopes: scopes.clone(),
                        })
                        .await?;
                    if json {
                        return print_json(&k).map(|_| Outcome::Done);
                    }
                    println!("key id: {}", k.key_id);
                    println!("key:    {}", k.key);
                    eprintln!("the key is shown only this once: store it now");
                }
                KeysCommand::List => {
                    let keys = c.list_keys().await?;
                    if json {
                        return print_json(&keys).map(|_| Outcome::Done);
                    }
                    for k in &keys {
                        let scopes: Vec<String> = k.scopes.iter().map(|s| s.to_string()).collect();
                        println!(
                            "{}  {:<24} {:<24} created {}{}",
                            k.key_id,
                            k.name,
                            scopes.join(","),
                            k.created_at,
                            if k.revoked { "  REVOKED" } else { "" }
                        );
                    }
                }
                KeysCommand::Revoke { key_id } => {
                    let r = c.revoke_key(key_id).await?;
                    if json {
                        return print_json(&r).map(|_| Outcome::Done);
                    }
                    println!("revoked {}", r.key_id);
                }
            }
        }
        Command::Verify(args) => return verify(&cli, args).await,
    }
    Ok(Outcome::Done)
}

async fn verify(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<Outcome> {
    // The log is public: no API key is sent, and only the key given here is trusted.
    let node = cli
        .node
        .as_deref()
        .ok_or_else(|| anyhow!("no node given: pass --node URL or set LOYALTY_NODE"))?;
    let client = Client::new(node, None)?;
    let resume_from = match &args.from_checkpoint {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading the saved checkpoint {}", p.display()))?,
        ),
        None => None,
    };
    let options = VerifyOptions {
        resume_from,
        progress: Some(Box::new(|p: &Progress| {
            eprintln!(
                "verified {} of {} entries, {} checkpoints ({:.1?})",
                p.entries_verified, p.entries_total, p.checkpoints_checked, p.elapsed
            );
        })),
        progress_every: args.progress_every.max(1),
        ..VerifyOptions::default()
    };
    match sdk::verify_log(&client, &args.log_key, options).await {
        Ok(summary) => {
            if let Some(p) = &args.save_checkpoint {
                save_atomically(p, &summary.checkpoint_note)
                    .with_context(|| format!("saving the checkpoint to {}", p.display()))?;
            }
            let balances: serde_json::Map<String, serde_json::Value> = summary
                .system_balances
                .iter()
                .map(|(a, b)| (a.to_string(), json!(b.to_string())))
                .collect();
            if cli.json {
                print_json(&json!({
                    "ok": true,
                    "origin": summary.checkpoint.origin,
                    "entries": summary.entries,
                    "checkpoints_checked": summary.checkpoints_checked,
                    "members": summary.members,
                    "system_balances": balances,
                    "root": hex_root(&summary.checkpoint.root),
                    "resumed_from": summary.resumed_from,
                    "elapsed_ms": summary.elapsed.as_millis() as u64,
                }))?;
            } else {
                println!("OK: the log of {} verifies", summary.checkpoint.origin);
                println!("entries:             {}", summary.entries);
                println!("checkpoints checked: {}", summary.checkpoints_checked);
                println!("members:             {}", summary.members);
                println!(
                    "latest checkpoint:   size {}, root {}",
                    summary.checkpoint.size,
                    hex_root(&summary.checkpoint.root)
                );
                if let Some(s) = summary.resumed_from {
                    println!("extends the saved checkpoint of size {s}");
                }
                for (a, b) in &summary.system_balances {
                    println!("account {a:<24} {b}");
                }
                println!("time:                {:.2?}", summary.elapsed);
            }
            Ok(Outcome::Done)
        }
        Err(VerifyError::Invalid { index, reason }) => {
            if cli.json {
                print_json(&json!({
                    "ok": false,
                    "first_bad_index": index,
                    "reason": reason.to_string(),
                }))?;
            } else {
                let _ = std::io::stdout().flush();
                eprintln!("FAILED at index {index}: {reason}");
            }
            Ok(Outcome::LogInvalid)
        }
        Err(e) => Err(e.into()),
    }
}

fn hex_root(root: &[u8; 32]) -> String {
    root.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `path` through a temporary file and a rename, so that a crash never
/// leaves a half-written checkpoint behind.
fn save_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn log_key() -> String {
        ledger::checkpoint::NoteSigner::from_seed("example.com/brand-a", &[7; 32])
            .unwrap()
            .verifier_key_string()
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verify_takes_the_verifier_key_as_key_or_log_key() {
        let key = log_key();
        for flag in ["--key", "--log-key"] {
            let cli = Cli::try_parse_from([
                "loyalty",
                "verify",
                "--node",
                "http://n",
                flag,
                &key,
                "--from-checkpoint",
                "cp",
            ])
            .unwrap();
            assert_eq!(cli.node.as_deref(), Some("http://n"));
            let Command::Verify(args) = cli.command else {
                panic!("not verify")
            };
            assert_eq!(args.log_key.to_string(), key);
            assert_eq!(args.from_checkpoint, Some(PathBuf::from("cp")));
        }
    }

    #[test]
    fn the_api_key_is_global_to_app_commands() {
        let cli = Cli::try_parse_from([
            "loyalty", "--node", "http://n", "--key", "lk_1", "--json", "earn", "m1", "50", "--id",
            "order-17",
        ])
        .unwrap();
        assert_eq!(cli.api_key.as_deref(), Some("lk_1"));
        assert!(cli.json);
        let Command::Earn { id, points, .. } = cli.command else {
            panic!("not earn")
        };
        assert_eq!(id.unwrap().as_str(), "order-17");
        assert_eq!(points.get(), 50);
    }

    #[test]
    fn bad_values_are_refused_by_the_parser() {
        assert!(Cli::try_parse_from(["loyalty", "earn", "a@b.c", "5"]).is_err());
        assert!(Cli::try_parse_from(["loyalty", "earn", "m1", "0"]).is_err());
        assert!(Cli::try_parse_from(["loyalty", "verify", "--key", "not-a-key"]).is_err());
        let cli = Cli::try_parse_from([
            "loyalty",
            "keys",
            "create",
            "pos",
            "--scope",
            "earn,read",
            "--scope",
            "redeem",
        ])
        .unwrap();
        let Command::Keys {
            command: KeysCommand::Create { scopes, .. },
        } = cli.command
        else {
            panic!("not keys create")
        };
        assert_eq!(scopes, vec![Scope::Earn, Scope::Read, Scope::Redeem]);
        assert!(
            Cli::try_parse_from(["loyalty", "keys", "create", "pos", "--scope", "root"]).is_err()
        );
    }
}
