//! The sequencer's linked submissions, against a real log.

use std::sync::Arc;

use ledger::checkpoint::NoteSigner;
use ledger::entry::{Earn, EntryKind, Hold, Post, Redeem};
use ledger::state::StateError;
use ledger::types::{LogTime, Points};
use ledger_store::log::{Log, Write, WriteError};

use super::{Sequencer, SubmitError, WriteStatus};
use crate::metrics::Metrics;

fn write(id: &str, kind: EntryKind) -> Write {
    Write {
        id: id.parse().unwrap(),
        kind,
    }
}

fn earn(id: &str, points: u64) -> Write {
    let member = "alice".parse().unwrap();
    let points = Points::new(points).unwrap();
    write(
        id,
        EntryKind::Earn(Earn {
            member,
            points,
            qualifying: true,
        }),
    )
}

fn hold(id: &str, points: u64) -> Write {
    write(
        id,
        EntryKind::Hold(Hold {
            member: "alice".parse().unwrap(),
            points: Points::new(points).unwrap(),
            expires_at: LogTime::MAX,
            payee: None,
            condition: None,
            authorisation: None,
        }),
    )
}

fn post(id: &str, hold: &str) -> Write {
    let hold = hold.parse().unwrap();
    write(
        id,
        EntryKind::Post(Post {
            hold,
            preimage: None,
        }),
    )
}

fn redeem(id: &str, points: u64) -> Write {
    let member = "alice".parse().unwrap();
    let points = Points::new(points).unwrap();
    write(id, EntryKind::Redeem(Redeem { member, points }))
}

/// A linked submission is answered with every write's commit, or with the refusal of the write
/// that was refused, and then nothing of it is logged; a retry finds the chain logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_submission_is_logged_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::from_seed("loyalty.example/a", &[7; 32]).unwrap();
    let log = Log::open(dir.path(), signer).unwrap();
    let (sequencer, shared, thread) = Sequencer::start(log, 16, 64, Arc::new(Metrics::new()));
    let run = async {
        sequencer.submit(earn("e1", 100)).await.unwrap();
        let refused = sequencer
            .submit_linked(vec![hold("h1", 30), post("p1", "h1"), redeem("r1", 1000)])
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                SubmitError::Refused(WriteError::State(StateError::InsufficientPoints { .. }))
            ),
            "{refused:?}"
        );
        assert_eq!(
            shared.checkpoint().size,
            1,
            "nothing of the chain is logged"
        );
        let chain = vec![hold("h1", 30), post("p1", "h1")];
        let committed = sequencer.submit_linked(chain.clone()).await.unwrap();
        let got: Vec<_> = committed.iter().map(|c| (c.status, c.index)).collect();
        assert_eq!(
            got,
            [(WriteStatus::Appended, 1), (WriteStatus::Appended, 2)]
        );
        assert_eq!(committed[1].checkpoint.size, 3);
        let again = sequencer.submit_linked(chain).await.unwrap();
        let got: Vec<_> = again.iter().map(|c| (c.status, c.index)).collect();
        assert_eq!(
            got,
            [(WriteStatus::Existing, 1), (WriteStatus::Existing, 2)]
        );
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("the sequencer answers within 30 s");
    drop(sequencer);
    thread.join().unwrap();
}
