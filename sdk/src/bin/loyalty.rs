//! `loyalty`: the command-line tool of the open loyalty ledger, for operators and auditors.
//! A thin shell over the `sdk` library: parse arguments, call one library function, print.
//!
//! Exit status: 0 on success; 1 when `verify` finds the log invalid (the first bad index is
//! printed) or not witnessed as asked, `monitor` raises an alert (a fork, a shrink, a bad
//! entry, a replay mismatch), or `attestation verify` finds the attestation invalid
//! (the reason is printed); 2 when a command could not be carried out (bad arguments,
//! network, an error answer from the node, an unreadable file).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The tool's allocator: jemalloc (see sdk/Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use clap::{Args, Parser, Subcommand};
use sdk::attestation::{AttestationError, VerifiedAttestation};
use sdk::verify::{Progress, VerifyError};
use sdk::{
    AddPartnerRequest, BrandId, Client, CreateKeyRequest, EarnRequest, EntryId, LogTime, MemberId,
    NoteVerifier, PartnerStatus, Points, RedeemRequest, Scope, VerifyOptions, WriteResult,
};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "loyalty",
    version,
    about = "Client of a loyalty-ledger brand node, and auditor of its log.",
    after_help = "Exit status: 0 on success, 1 when `verify` finds the log invalid (or not witnessed as asked), `monitor` raises an alert, or `attestation verify` finds the attestation invalid, 2 on any other error."
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
    /// Redeem a partner brand's points at this brand (needs `redeem`), end to end: quote,
    /// prepare (the member's brand holds the points), commit. Run it again with the same
    /// `--redemption` after an interruption: every step is idempotent, so it resumes where it
    /// stopped and completes exactly once. Deliver the reward only after it succeeds.
    RedeemAtPartner(Box<RedeemAtPartnerArgs>),
    /// Refund points of a committed cross-brand redemption on both sides (needs `redeem`, at
    /// the brand where the member redeemed). Run it again with the same `--refund` after an
    /// interruption: it is idempotent by refund id.
    RefundAtPartner {
        /// The redemption's id.
        redemption: EntryId,
        /// Points to return to the member: at most what is left of the redemption.
        points: Points,
        /// The refund's id; reuse it to resume. A random one is made (and printed) if absent.
        #[arg(long)]
        refund: Option<EntryId>,
    },
    /// Manage API keys (needs an admin key).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Verify the node's whole log: signatures, Merkle roots, and a full replay.
    Verify(Box<VerifyArgs>),
    /// Follow one or more logs continuously: verify each new checkpoint (signature,
    /// consistency, witness quorum) and replay the new entries; alert on a fork, a shrink, a
    /// bad entry or a replay mismatch (needs the `disk` feature).
    Monitor(Box<MonitorArgs>),
    /// List the node's partners: pinning, freeze, mirror and witness status (needs `read`).
    Partners {
        #[command(subcommand)]
        command: Option<PartnersCommand>,
    },
    /// List the equivocation evidence the node holds against its partners (needs `read`).
    Evidence,
    /// Reconcile the obligations with a partner for a period: this node's log against its
    /// verified mirror of the partner's (needs `read`). Exits 1 when the sides disagree.
    Reconcile {
        /// The partner brand.
        partner: BrandId,
        /// Start of the period, log time in ms (inclusive).
        #[arg(long)]
        from: u64,
        /// End of the period, log time in ms (exclusive).
        #[arg(long)]
        to: u64,
        /// The agreement, when there are several with the partner.
        #[arg(long)]
        agreement: Option<sdk::EntryId>,
        /// Print the report as CSV.
        #[arg(long)]
        csv: bool,
    },
    /// Co-sign the statement of a settlement period with a partner and log it on both sides
    /// (needs `admin`); without `--period`, list the co-signed statements (needs `read`).
    Statement {
        /// The partner brand.
        partner: BrandId,
        /// The settlement period's number.
        #[arg(long)]
        period: Option<u64>,
        /// The agreement, when there are several with the partner.
        #[arg(long)]
        agreement: Option<sdk::EntryId>,
    },
    /// Get a member's tier attestation, or verify one offline.
    Attestation {
        #[command(subcommand)]
        command: AttestationCommand,
    },
}

#[derive(Args)]
struct RedeemAtPartnerArgs {
    /// The member's brand, whose points are spent.
    #[arg(long)]
    payer: BrandId,
    /// The agreement between the two brands.
    #[arg(long)]
    agreement: EntryId,
    /// The member's pseudonymous id at the payer.
    #[arg(long)]
    member: MemberId,
    /// The member's spend authorisation at the payer for this brand.
    #[arg(long)]
    authorisation: EntryId,
    /// Points to spend ...
    #[arg(
        long,
        required_unless_present = "price_minor",
        conflicts_with = "price_minor"
    )]
    points: Option<Points>,
    /// ... or the price to pay, in minor units of the settlement currency.
    #[arg(long)]
    price_minor: Option<u64>,
    /// The redemption's id; reuse it to resume. A random one is made (and printed) if absent.
    #[arg(long)]
    redemption: Option<EntryId>,
}

#[derive(Subcommand)]
enum PartnersCommand {
    /// Add a partner, or pin the key of an unpinned one (needs `admin`).
    Add(Box<PartnerAddArgs>),
    /// Lift the freeze that evidence put on a partnership, after investigation (needs
    /// `admin`); the evidence stays.
    Unfreeze {
        /// The partner's brand id.
        brand: BrandId,
    },
}

#[derive(Args)]
struct PartnerAddArgs {
    /// The partner's brand id.
    brand: BrandId,
    /// Base URL of the partner's node.
    url: String,
    /// The partner's C2SP log verifier key (type 0x01), obtained out of band; without it the
    /// partner is listed but unpinned.
    #[arg(long = "key", visible_alias = "verifier-key")]
    key: Option<NoteVerifier>,
}

#[derive(Subcommand)]
enum AttestationCommand {
    /// Make the node attest a member's tier (needs `earn`: it logs an entry) and print or save the attestation.
    Get {
        /// The member's pseudonymous id.
        member: MemberId,
        /// Write the attestation to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify an attestation file offline, with the brand's pinned key and your own witness
    /// policy. Exit status 0 when it is valid, 1 when it is not.
    Verify(Box<AttestationVerifyArgs>),
}

#[derive(Args)]
struct AttestationVerifyArgs {
    /// The attestation file (JSON, as `attestation get` writes it).
    file: PathBuf,
    /// The attesting brand's C2SP log verifier key, pinned out of band.
    #[arg(long = "key", visible_alias = "log-key")]
    key: NoteVerifier,
    /// The brand the attestation must be by.
    #[arg(long)]
    brand: BrandId,
    /// A witness whose cosignature counts: its cosignature key (type 0x04) or a partner's
    /// log key (type 0x01), from which its witness key is derived. Repeat for several.
    #[arg(long = "witness")]
    witnesses: Vec<NoteVerifier>,
    /// How many distinct witnesses must have cosigned (default: all the --witness keys).
    #[arg(long)]
    quorum: Option<usize>,
    /// Judge expiry at this log time (ms since the Unix epoch) instead of now.
    #[arg(long)]
    at: Option<u64>,
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
    /// from index 0; --state resumes instead).
    #[arg(long, conflicts_with = "state")]
    from_checkpoint: Option<PathBuf>,
    /// Where to save the latest checkpoint once the log verifies, to resume from next time.
    #[arg(long)]
    save_checkpoint: Option<PathBuf>,
    /// Entries between two updates of the progress line (shown on a terminal only).
    #[arg(long, default_value_t = 10_000)]
    progress_every: u64,
    /// A witness the log must be cosigned by: its cosignature key (type 0x04) or a partner's
    /// log key (type 0x01), from which its witness key is derived. Repeat for several. With
    /// witnesses (or --quorum), the node's latest cosigned checkpoint must meet the quorum.
    #[arg(long = "witness")]
    witnesses: Vec<NoteVerifier>,
    /// How many distinct witnesses must have cosigned (default: all the --witness keys).
    #[arg(long)]
    quorum: Option<usize>,
    /// Keep the audit in this directory (a RocksDB store: the replayed state, the verified
    /// size, tree and latest checkpoint seen) and resume from it: the next run checks that
    /// the log extends what was verified and replays only the new entries. Created when
    /// missing. Needs the `disk` feature.
    #[arg(long, conflicts_with = "disk")]
    state: Option<PathBuf>,
    /// Keep the replay's state in a RocksDB store in this new, empty directory instead of in
    /// memory, for a log whose state is larger than memory (needs the `disk` feature; --state
    /// does the same and resumes next time).
    #[arg(long)]
    disk: Option<PathBuf>,
    /// Entries between two full invariant checks, each reading the whole state (0: only at
    /// the end of the run).
    #[arg(long, default_value_t = 0)]
    invariants_every: u64,
    /// Also check every invariant over the whole state at the end of a run that resumes from
    /// --state. A fresh run always does; a resumed one by default checks only what the new
    /// entries touch (every rule of the state machine, entry by entry), because the full
    /// check reads every record of the state, which costs more than the new entries.
    #[arg(long, requires = "state")]
    check_invariants: bool,
}

#[derive(Args)]
struct MonitorArgs {
    /// The configuration file (TOML): `interval_ms`, `webhook_url`, `webhook_timeout_ms`, and
    /// one `[[logs]]` table per log (`name`, `node`, `log_key`, `witnesses`, `quorum`).
    #[arg(long)]
    config: PathBuf,
    /// Where each log's audit is kept (one directory per log name, as `verify --state`);
    /// a restarted monitor resumes from there.
    #[arg(long)]
    state: PathBuf,
    /// Rewrite this file with the monitor's metrics (Prometheus text format) after every
    /// round, for a node_exporter textfile collector or any scraper.
    #[arg(long)]
    metrics_file: Option<PathBuf>,
    /// One round over every log, then exit: 0 when all verify, 1 on an alert, 2 when a round
    /// could not be completed.
    #[arg(long)]
    once: bool,
    /// Exit with status 1 at the first alert instead of following the other logs.
    #[arg(long)]
    exit_on_alert: bool,
}

/// How a command ended, when it could be carried out.
enum Outcome {
    /// It did what was asked.
    Done,
    /// `verify` found the log invalid or not witnessed, or `attestation verify` found the
    /// attestation invalid (already reported).
    Invalid,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Invalid) => ExitCode::from(1),
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

/// The id given, or a fresh one, printed (on stderr) before anything is sent so that an
/// interrupted run can be resumed with it.
fn given_or_new(given: Option<&EntryId>, what: &str) -> EntryId {
    given.cloned().unwrap_or_else(|| {
        let id = sdk::new_entry_id();
        eprintln!(
            "{what} id: {id} (to resume after an interruption, run again with --{what} {id})"
        );
        id
    })
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
        Command::RedeemAtPartner(args) => {
            let redemption = given_or_new(args.redemption.as_ref(), "redemption");
            let req = sdk::federation::RedeemAtPartner {
                redemption,
                agreement: args.agreement.clone(),
                payer: args.payer.clone(),
                member: args.member.clone(),
                points: args.points,
                price_minor: args.price_minor,
                authorisation: args.authorisation.clone(),
            };
            let done = client(&cli, true)?.redeem_at_partner(&req).await?;
            if json {
                return print_json(&done).map(|_| Outcome::Done);
            }
            println!(
                "committed: redemption {} of member {} of {}: {} owes {} {} minor units",
                done.redemption,
                args.member,
                args.payer,
                args.payer,
                done.amount_minor,
                done.currency
            );
            println!(
                "{}'s post at index {}, its payable at index {}; this node's receivable at index {}",
                args.payer, done.payer.post.index, done.payer.payable.index, done.receivable.index
            );
        }
        Command::RefundAtPartner {
            redemption,
            points,
            refund,
        } => {
            let refund = given_or_new(refund.as_ref(), "refund");
            let req = sdk::federation::RefundRequest {
                refund,
                points: *points,
            };
            let r = client(&cli, true)?
                .refund_at_partner(redemption, &req)
                .await?;
            if json {
                return print_json(&r).map(|_| Outcome::Done);
            }
            println!(
                "refunded: {} points of redemption {} (refund {}; {} refunded so far), {} minor units of {} off the obligation",
                r.points, r.redemption, r.refund, r.refunded_points, r.amount_minor, r.currency
            );
            println!(
                "the payer's obligation_refund at index {}; this node's at index {}",
                r.payer.index, r.receivable.index
            );
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
        Command::Monitor(args) => return monitor(args, json).await,
        Command::Partners { command } => {
            let c = client(&cli, true)?;
            match command {
                None => {
                    let partners = c.partners().await?;
                    if json {
                        return print_json(&partners).map(|_| Outcome::Done);
                    }
                    print_partners(&partners);
                }
                Some(PartnersCommand::Add(args)) => {
                    let p = c
                        .add_partner(&AddPartnerRequest {
                            brand: args.brand.clone(),
                            url: args.url.clone(),
                            verifier_key: args.key.as_ref().map(|k| k.to_string()),
                        })
                        .await?;
                    if json {
                        return print_json(&p).map(|_| Outcome::Done);
                    }
                    let pinned = if p.pinned { "pinned" } else { "unpinned" };
                    println!("added partner {} at {} ({pinned})", p.brand, p.url);
                }
                Some(PartnersCommand::Unfreeze { brand }) => {
                    let p = c.unfreeze_partner(brand).await?;
                    if json {
                        return print_json(&p).map(|_| Outcome::Done);
                    }
                    println!("unfroze partner {} (its evidence is kept)", p.brand);
                }
            }
        }
        Command::Reconcile {
            partner,
            from,
            to,
            agreement,
            csv,
        } => {
            let r = client(&cli, true)?
                .reconciliation(partner, agreement.as_ref(), *from, *to)
                .await?;
            if *csv {
                print!("{}", ledger::statement::to_csv(&r));
            } else if json {
                print_json(&r)?;
            } else {
                println!(
                    "agreement {}  period {}  {}",
                    r.agreement,
                    r.period,
                    if r.agreed { "AGREED" } else { "DISAGREE" }
                );
                println!(
                    "net: {} owes {} {} minor units",
                    r.ours.net.payer, r.ours.net.payee, r.ours.net.amount_minor
                );
                for l in &r.lines {
                    println!(
                        "{:<16} {} ours={:?} theirs={:?}",
                        l.status.as_str(),
                        l.redemption,
                        l.amount_ours_minor,
                        l.amount_theirs_minor
                    );
                }
            }
            return Ok(if r.agreed {
                Outcome::Done
            } else {
                Outcome::Invalid
            });
        }
        Command::Statement {
            partner,
            period,
            agreement,
        } => {
            let c = client(&cli, true)?;
            let logged = match period {
                Some(k) => vec![c.statement(partner, agreement.as_ref(), *k).await?],
                None => c.statements(partner, agreement.as_ref()).await?,
            };
            if json {
                return print_json(&logged).map(|_| Outcome::Done);
            }
            for l in &logged {
                let st = &l.statement.statement;
                println!(
                    "period {} {}  {} owes {} {} {} minor units  ({} lines, entry {}, signed by {})",
                    l.period,
                    st.period,
                    st.net.payer,
                    st.net.payee,
                    st.net.amount_minor,
                    st.currency,
                    st.lines,
                    l.receipt.index,
                    l.statement
                        .signatures
                        .iter()
                        .map(|s| s.brand.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                );
            }
            return Ok(Outcome::Done);
        }
        Command::Evidence => {
            let evidence = client(&cli, true)?.evidence().await?;
            if json {
                return print_json(&evidence).map(|_| Outcome::Done);
            }
            if evidence.is_empty() {
                println!("no evidence");
            }
            for e in &evidence {
                println!(
                    "{:>6}  {:<24} {:<14} detected {}  {}",
                    e.id, e.brand, e.kind, e.detected_ms, e.detail
                );
            }
        }
        Command::Attestation {
            command: AttestationCommand::Get { member, out },
        } => {
            let att = client(&cli, true)?.attestation(member).await?;
            let text = serde_json::to_string_pretty(&att)? + "\n";
            match out {
                Some(p) => {
                    save_atomically(p, &text)
                        .with_context(|| format!("saving the attestation to {}", p.display()))?;
                    eprintln!("saved the attestation to {}", p.display());
                }
                None => print!("{text}"),
            }
        }
        Command::Attestation {
            command: AttestationCommand::Verify(args),
        } => return verify_attestation(args, json),
    }
    Ok(Outcome::Done)
}

fn print_partners(partners: &[PartnerStatus]) {
    println!(
        "{:<24} {:<6} {:<6} {:>21} {:>8}  LAST ERROR",
        "BRAND", "PINNED", "FROZEN", "VERIFIED/PARTNER", "LAG"
    );
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for p in partners {
        println!(
            "{:<24} {:<6} {:<6} {:>21} {:>8}  {}",
            p.brand,
            yes_no(p.pinned),
            yes_no(p.frozen),
            format!("{}/{}", p.verified_size, p.partner_size),
            p.lag,
            p.last_error.as_deref().unwrap_or("-")
        );
    }
}

/// The witness policy of `--witness` keys and `--quorum` (default: all of them), if any was
/// given.
fn witness_policy_of(
    log_key: &NoteVerifier,
    witnesses: &[NoteVerifier],
    quorum: Option<usize>,
) -> anyhow::Result<Option<sdk::WitnessPolicy>> {
    if witnesses.is_empty() && quorum.is_none() {
        return Ok(None);
    }
    let policy = sdk::witness_policy(log_key.clone(), witnesses, 0)?;
    let quorum = quorum.unwrap_or(policy.witnesses.len());
    Ok(Some(sdk::witness_policy(
        log_key.clone(),
        witnesses,
        quorum,
    )?))
}

/// Reads and verifies an attestation file; the outer error is for a file that cannot be read
/// or arguments that cannot be used, the inner one for an invalid attestation.
fn check_attestation(
    args: &AttestationVerifyArgs,
    now: LogTime,
) -> anyhow::Result<Result<VerifiedAttestation, (String, String)>> {
    let policy =
        witness_policy_of(&args.key, &args.witnesses, args.quorum)?.unwrap_or(sdk::WitnessPolicy {
            log: args.key.clone(),
            witnesses: Vec::new(),
            quorum: 0,
        });
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let att = match sdk::attestation::from_json(&bytes) {
        Ok(a) => a,
        Err(e) => return Ok(Err(("attestation_malformed".into(), e.to_string()))),
    };
    Ok(
        sdk::attestation::verify(&att, &args.brand, &policy, Some(now))
            .map_err(|e: AttestationError| (e.code().to_owned(), e.to_string())),
    )
}

fn verify_attestation(args: &AttestationVerifyArgs, json: bool) -> anyhow::Result<Outcome> {
    let now = match args.at {
        Some(ms) => LogTime::new(ms)?,
        None => {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_millis();
            LogTime::new(u64::try_from(ms)?)?
        }
    };
    match check_attestation(args, now)? {
        Ok(v) => {
            let s = &v.statement;
            if json {
                print_json(&json!({
                    "valid": true,
                    "brand": s.brand,
                    "member": s.member,
                    "tier": s.tier,
                    "valid_until": s.valid_until,
                    "index": v.index,
                    "time": v.time,
                    "checkpoint_size": v.checkpoint.size,
                    "cosigners": v.cosigners(),
                }))?;
            } else {
                let until = s.valid_until.map_or_else(
                    || "for good (base tier)".to_owned(),
                    |u| format!("until {u}"),
                );
                println!(
                    "VALID: {} attests that member {} holds tier {} {until}",
                    s.brand, s.member, s.tier
                );
                println!(
                    "logged at index {} (time {}), under checkpoint size {}",
                    v.index, v.time, v.checkpoint.size
                );
                let cosigners = v.cosigners();
                if cosigners.is_empty() {
                    println!("cosigned by: no witness required");
                } else {
                    println!("cosigned by: {}", cosigners.join(", "));
                }
            }
            Ok(Outcome::Done)
        }
        Err((code, reason)) => {
            if json {
                print_json(&json!({"valid": false, "code": code, "reason": reason}))?;
            } else {
                eprintln!("INVALID ({code}): {reason}");
            }
            Ok(Outcome::Invalid)
        }
    }
}

/// The replay's state in a RocksDB store in `dir`: new or empty unless `resume`, else the
/// audit saved there (`loyalty verify --state`).
#[cfg(feature = "disk")]
fn disk_replay_store(dir: &std::path::Path, resume: bool) -> anyhow::Result<sdk::ReplayStore> {
    if !resume && dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!(
            "--disk {}: the directory must be new or empty (a replay starts from index 0; \
             --state resumes from a directory)",
            dir.display()
        );
    }
    sdk::verify::disk::open(dir)
        .with_context(|| format!("opening the audit store in {}", dir.display()))
}

#[cfg(not(feature = "disk"))]
fn disk_replay_store(_dir: &std::path::Path, _resume: bool) -> anyhow::Result<sdk::ReplayStore> {
    anyhow::bail!(
        "--state and --disk need the `disk` feature, which builds RocksDB: \
         cargo install --path sdk --features disk (or cargo build -p sdk --features disk)"
    )
}

/// A progress line on stderr, rewritten in place, when stderr is a terminal; nothing
/// otherwise (scripts and `--json` get only the result).
fn progress_line() -> Option<sdk::verify::ProgressFn> {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let mut last = std::time::Instant::now() - std::time::Duration::from_secs(1);
    Some(Box::new(move |p: &Progress| {
        let done = p.entries_verified == p.entries_total;
        if !done && last.elapsed() < std::time::Duration::from_millis(250) {
            return;
        }
        last = std::time::Instant::now();
        let new = p.entries_verified - p.entries_at_start;
        let rate = new as f64 / p.elapsed.as_secs_f64().max(1e-3);
        let left = p.entries_total - p.entries_verified;
        let eta = if rate > 0.0 { left as f64 / rate } else { 0.0 };
        eprint!(
            "\rverified {} of {} entries, {:.0} entries/s, ETA {:.0} s, {} checkpoints   ",
            p.entries_verified, p.entries_total, rate, eta, p.checkpoints_checked
        );
        if done {
            eprintln!();
        }
    }))
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
    let witness_policy = witness_policy_of(&args.log_key, &args.witnesses, args.quorum)?;
    let replay_store = match (&args.state, &args.disk) {
        (Some(dir), _) => Some(disk_replay_store(dir, true)?),
        (None, Some(dir)) => Some(disk_replay_store(dir, false)?),
        (None, None) => None,
    };
    let resumed = replay_store.as_ref().is_some_and(|r| r.resume.is_some());
    let options = VerifyOptions {
        resume_from,
        witness_policy,
        replay_store,
        progress: progress_line(),
        progress_every: args.progress_every.max(1),
        invariants_every: args.invariants_every,
        invariants_at_end: !resumed || args.check_invariants,
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
                    "entries_replayed": summary.entries_replayed,
                    "witnessed": summary.witnessed.as_ref().map(|w| json!({
                        "size": w.size,
                        "cosigners": w.cosigners,
                    })),
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
                println!(
                    "entries replayed:    {} (this run)",
                    summary.entries_replayed
                );
                if let Some(w) = &summary.witnessed {
                    let by = if w.cosigners.is_empty() {
                        "no witness required".to_owned()
                    } else {
                        w.cosigners.join(", ")
                    };
                    println!("witnessed up to:     size {} (cosigned by {by})", w.size);
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
            Ok(Outcome::Invalid)
        }
        Err(VerifyError::NotWitnessed(e)) => {
            if cli.json {
                print_json(&json!({"ok": false, "not_witnessed": e.to_string()}))?;
            } else {
                let _ = std::io::stdout().flush();
                eprintln!("FAILED: the log is not witnessed as required: {e}");
            }
            Ok(Outcome::Invalid)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(feature = "disk")]
fn monitor_stores(dir: PathBuf) -> anyhow::Result<sdk::monitor::StoreOpener> {
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    Ok(Box::new(move |name: &str| {
        sdk::verify::disk::open(&dir.join(name)).map_err(|e| e.to_string())
    }))
}

#[cfg(not(feature = "disk"))]
fn monitor_stores(_dir: PathBuf) -> anyhow::Result<sdk::monitor::StoreOpener> {
    anyhow::bail!(
        "monitor needs the `disk` feature, which builds RocksDB: \
         cargo install --path sdk --features disk (or cargo build -p sdk --features disk)"
    )
}

async fn monitor(args: &MonitorArgs, json: bool) -> anyhow::Result<Outcome> {
    use sdk::monitor::{Monitor, MonitorConfig, Outcome as Found};
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config: MonitorConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", args.config.display()))?;
    let mut m = Monitor::new(&config, monitor_stores(args.state.clone())?)?;
    loop {
        let events = m.round().await;
        let (mut alerted, mut failed) = (false, false);
        for e in &events {
            match &e.outcome {
                Found::Verified {
                    size,
                    replayed,
                    witnessed,
                } => {
                    if json {
                        print_json_line(&json!({"log": e.log, "ok": true, "size": size,
                            "replayed": replayed, "witnessed": witnessed}))?;
                    } else {
                        let w =
                            witnessed.map_or(String::new(), |w| format!(", witnessed up to {w}"));
                        println!("OK {}: {size} entries verified ({replayed} new{w})", e.log);
                    }
                }
                Found::Alert(a) => {
                    alerted = true;
                    if json {
                        print_json_line(&json!({"log": e.log, "ok": false, "alert": a}))?;
                    } else {
                        println!(
                            "ALERT {} {} at index {}: {}",
                            a.log, a.kind, a.index, a.message
                        );
                    }
                }
                Found::Failed(why) => {
                    failed = true;
                    if json {
                        print_json_line(&json!({"log": e.log, "ok": false, "failed": why}))?;
                    } else {
                        eprintln!("FAILED {}: {why}", e.log);
                    }
                }
            }
        }
        let _ = std::io::stdout().flush();
        if let Some(p) = &args.metrics_file {
            save_atomically(p, &m.metrics_text())
                .with_context(|| format!("writing the metrics to {}", p.display()))?;
        }
        if args.once {
            return match (alerted, failed) {
                (true, _) => Ok(Outcome::Invalid),
                (false, true) => Err(anyhow!("a round could not be completed")),
                (false, false) => Ok(Outcome::Done),
            };
        }
        if alerted && args.exit_on_alert {
            return Ok(Outcome::Invalid);
        }
        if m.following() == 0 {
            eprintln!("every log raised an alert: nothing left to follow");
            return Ok(Outcome::Invalid);
        }
        tokio::time::sleep(m.interval()).await;
    }
}

/// One JSON value on one line (the monitor's `--json` output is a stream of events).
fn print_json_line(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
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
    fn reconcile_takes_a_partner_and_a_period() {
        let cli = Cli::try_parse_from([
            "loyalty",
            "--key",
            "k",
            "reconcile",
            "air",
            "--from",
            "0",
            "--to",
            "86400000",
            "--csv",
        ])
        .unwrap();
        let Command::Reconcile {
            partner,
            from,
            to,
            csv,
            agreement,
        } = cli.command
        else {
            panic!("not reconcile")
        };
        assert_eq!(
            (partner.as_str(), from, to, csv, agreement),
            ("air", 0, 86_400_000, true, None)
        );
        assert!(Cli::try_parse_from(["loyalty", "reconcile", "air", "--from", "0"]).is_err());
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
    fn cross_brand_redemption_commands_parse() {
        let cli = Cli::try_parse_from([
            "loyalty",
            "redeem-at-partner",
            "--payer",
            "air",
            "--agreement",
            "agr-1",
            "--member",
            "alice",
            "--authorisation",
            "auth-1",
            "--points",
            "700",
            "--redemption",
            "red-1",
        ])
        .unwrap();
        let Command::RedeemAtPartner(args) = cli.command else {
            panic!("not redeem-at-partner")
        };
        assert_eq!(args.points.map(Points::get), Some(700));
        assert_eq!(args.redemption.unwrap().as_str(), "red-1");
        // Exactly one of --points and --price-minor.
        let base = [
            "loyalty",
            "redeem-at-partner",
            "--payer",
            "air",
            "--agreement",
            "agr-1",
            "--member",
            "alice",
            "--authorisation",
            "auth-1",
        ];
        assert!(Cli::try_parse_from(base).is_err());
        let both = [&base[..], &["--points", "1", "--price-minor", "5"]].concat();
        assert!(Cli::try_parse_from(both).is_err());
        let price = [&base[..], &["--price-minor", "5"]].concat();
        assert!(Cli::try_parse_from(price).is_ok());

        let cli = Cli::try_parse_from(["loyalty", "refund-at-partner", "red-1", "200"]).unwrap();
        let Command::RefundAtPartner { points, refund, .. } = cli.command else {
            panic!("not refund-at-partner")
        };
        assert_eq!((points.get(), refund), (200, None));
        assert!(Cli::try_parse_from(["loyalty", "refund-at-partner", "red-1", "0"]).is_err());
    }

    #[test]
    fn federation_commands_parse() {
        let key = log_key();
        let cli = Cli::try_parse_from([
            "loyalty",
            "--key",
            "lk_admin",
            "partners",
            "add",
            "brand-b",
            "http://b:7700",
            "--key",
            &key,
        ])
        .unwrap();
        assert_eq!(cli.api_key.as_deref(), Some("lk_admin"));
        let Command::Partners {
            command: Some(PartnersCommand::Add(args)),
        } = cli.command
        else {
            panic!("not partners add")
        };
        assert_eq!(
            (args.brand.as_str(), args.url.as_str()),
            ("brand-b", "http://b:7700")
        );
        assert_eq!(args.key.unwrap().to_string(), key);
        let cli = Cli::try_parse_from(["loyalty", "partners", "--json"]).unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Partners { command: None }));
        assert!(Cli::try_parse_from(["loyalty", "partners", "unfreeze", "brand-b"]).is_ok());
        assert!(Cli::try_parse_from(["loyalty", "partners", "unfreeze", "Brand B"]).is_err());
        assert!(Cli::try_parse_from(["loyalty", "evidence"]).is_ok());
        let cli = Cli::try_parse_from(["loyalty", "attestation", "get", "m1", "--out", "a.json"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Attestation {
                command: AttestationCommand::Get { out: Some(_), .. }
            }
        ));
        let cli = Cli::try_parse_from([
            "loyalty",
            "verify",
            "--node",
            "http://n",
            "--log-key",
            &key,
            "--witness",
            &key,
            "--witness",
            &key,
            "--quorum",
            "1",
        ])
        .unwrap();
        let Command::Verify(args) = cli.command else {
            panic!("not verify")
        };
        assert_eq!((args.witnesses.len(), args.quorum), (2, Some(1)));
    }

    /// A log of one `tier_attestation` entry for m1 (gold until 9000), cosigned by two
    /// witnesses, written to a file; returns the path, the brand's key and the witness keys.
    fn attestation_file(name: &str) -> (PathBuf, String, Vec<String>) {
        use ledger::attestation::{Attestation, Statement};
        use ledger::checkpoint::{sign_checkpoint, Checkpoint, CosignatureSigner, NoteSigner};
        use ledger::entry::{Entry, EntryKind, TierAttestation};
        use ledger::merkle::MemoryTree;
        let log = NoteSigner::from_seed("example.com/brand-a", &[7; 32]).unwrap();
        let witnesses: Vec<CosignatureSigner> = (1..=2u8)
            .map(|n| CosignatureSigner::from_seed(&format!("example.com/w{n}"), &[n; 32]).unwrap())
            .collect();
        let until = Some(LogTime::new(9_000).unwrap());
        let entry = Entry {
            time: LogTime::new(1_000).unwrap(),
            id: "sys.attest.m1.gold.9000".parse().unwrap(),
            kind: EntryKind::TierAttestation(TierAttestation {
                member: "m1".parse().unwrap(),
                tier: "gold".parse().unwrap(),
                valid_until: until,
            }),
        };
        let mut tree = MemoryTree::new();
        tree.push(&entry.to_bytes()).unwrap();
        let cp = Checkpoint {
            origin: log.name().into(),
            size: 1,
            root: tree.root().unwrap(),
            extensions: vec![],
        };
        let mut note = sign_checkpoint(&cp, &log).unwrap();
        for w in &witnesses {
            note.push_signature(w.cosign(&note.text, 1).unwrap())
                .unwrap();
        }
        let att = Attestation {
            statement: Statement {
                brand: "brand-a".parse().unwrap(),
                member: "m1".parse().unwrap(),
                tier: "gold".parse().unwrap(),
                valid_until: until,
            },
            receipt: sdk::Receipt {
                index: 0,
                entry: String::from_utf8(entry.to_bytes()).unwrap(),
                inclusion_proof: vec![],
                checkpoint: note.to_string(),
            },
        };
        let path =
            std::env::temp_dir().join(format!("loyalty-cli-{}-{name}.json", std::process::id()));
        std::fs::write(&path, serde_json::to_string_pretty(&att).unwrap()).unwrap();
        let keys = witnesses.iter().map(|w| w.verifier_key_string()).collect();
        (path, log.verifier_key_string(), keys)
    }

    fn verify_args(path: &Path, key: &str, extra: &[&str]) -> AttestationVerifyArgs {
        let mut argv = vec![
            "loyalty",
            "attestation",
            "verify",
            path.to_str().unwrap(),
            "--key",
            key,
            "--brand",
            "brand-a",
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Attestation {
            command: AttestationCommand::Verify(args),
        } = cli.command
        else {
            panic!("not attestation verify")
        };
        *args
    }

    #[test]
    fn an_attestation_file_is_verified_offline() {
        let (path, key, w) = attestation_file("offline");
        let now = LogTime::new(5_000).unwrap();
        let code =
            |extra: &[&str], now| match check_attestation(&verify_args(&path, &key, extra), now)
                .unwrap()
            {
                Ok(_) => "valid".to_owned(),
                Err((code, _)) => code,
            };
        assert_eq!(code(&[], now), "valid");
        assert_eq!(
            code(&["--witness", &w[0], "--witness", &w[1]], now),
            "valid"
        );
        assert_eq!(
            code(
                &["--witness", &w[0], "--witness", &w[1], "--quorum", "1"],
                now
            ),
            "valid"
        );
        assert_eq!(
            code(&["--at", "9000"], LogTime::new(9_000).unwrap()),
            "attestation_expired"
        );
        let mut args = verify_args(&path, &key, &[]);
        args.brand = "brand-b".parse().unwrap();
        let (wrong, _) = check_attestation(&args, now).unwrap().unwrap_err();
        assert_eq!(wrong, "attestation_wrong_brand");
        // A third witness that did not cosign: the default quorum (all) is not met.
        let third = ledger::checkpoint::CosignatureSigner::from_seed("example.com/w3", &[3; 32])
            .unwrap()
            .verifier_key_string();
        let args = verify_args(&path, &key, &["--witness", &w[0], "--witness", &third]);
        let (quorum, _) = check_attestation(&args, now).unwrap().unwrap_err();
        assert_eq!(quorum, "attestation_quorum");
        // A quorum larger than the witnesses given is an argument error, not a verdict.
        let args = verify_args(&path, &key, &["--witness", &w[0], "--quorum", "2"]);
        assert!(check_attestation(&args, now).is_err());
        // A tampered file is invalid.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("\"tier\": \"gold\"", "\"tier\": \"platinum\""),
        )
        .unwrap();
        assert_eq!(code(&[], now), "attestation_mismatch");
        std::fs::write(&path, "{}").unwrap();
        assert_eq!(code(&[], now), "attestation_malformed");
        std::fs::remove_file(&path).unwrap();
        assert!(check_attestation(&verify_args(&path, &key, &[]), now).is_err());
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
