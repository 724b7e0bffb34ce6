//! `loyalty-node`: the node's commands ([`node::cli::Command`]) and `demo`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The process's allocator (see Cargo.toml): jemalloc, also behind `malloc` for RocksDB.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "loyalty-node",
    version,
    about = "A brand node of the open loyalty ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Node(node::cli::Command),
    /// Start three partner brands on this machine and run a narrated day of the federation
    /// (earn, tiers, cross-brand redemption, refund, crash and recovery, status match,
    /// settlement); the nodes keep running until Ctrl-C.
    Demo {
        /// A new (or empty) directory for the three nodes' data and logs (default
        /// `./loyalty-demo-<UTC time>`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Stop the nodes once the scenario is done instead of waiting for Ctrl-C.
        #[arg(long)]
        exit_after_scenario: bool,
        /// Write a JSON report of what the scenario did (URLs, keys, expected balances,
        /// redemptions, refund, statements) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Node(command) => node::cli::execute(command),
        Command::Demo {
            dir,
            exit_after_scenario,
            report,
        } => {
            node::cli::private_files();
            loyalty_node::demo::main(loyalty_node::demo::DemoOptions {
                dir,
                exit_after_scenario,
                report,
            })
        }
    }
}
