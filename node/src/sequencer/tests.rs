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

/// A batch whose write fails is answered with the failure, and so is every batch staged after
/// it, though they were applied: none is written, the node stops taking writes, the log
/// refuses more, and the store reopens with the batch before the failure only.
#[test]
fn after_a_failed_write_nothing_later_is_written_or_answered_as_committed() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::{OnceLock, RwLock};

    use super::committer::Committer;
    use super::{CheckpointInfo, Request, Shared};

    let dir = tempfile::tempdir().unwrap();
    let signer = || NoteSigner::from_seed("loyalty.example/a", &[7; 32]).unwrap();
    let mut log = Log::open(dir.path(), signer()).unwrap();
    let shared = Arc::new(Shared {
        checkpoint: RwLock::new(Arc::new(CheckpointInfo {
            size: 0,
            note: log.checkpoint_note().to_owned(),
        })),
        ready: AtomicBool::new(true),
        depth: AtomicUsize::new(0),
        housekeeping_held: OnceLock::new(),
    });
    let store = log.store().clone();
    let mut calls = 0;
    let writer = Box::new(move |staged: &ledger_store::log::Staged| {
        calls += 1;
        if calls == 2 {
            return Err("disk full".to_owned());
        }
        staged.write(&store).map_err(|e| e.to_string())
    });
    let mut committer = Committer::start_with(writer, shared.clone(), Arc::new(Metrics::new()));
    let mut answers = Vec::new();
    for k in 0..3u64 {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let writes = vec![earn(&format!("e{k}"), 10)];
        let request = Request {
            writes: writes.clone(),
            linked: false,
            reply,
        };
        let at = LogTime::new(1_000 + k).unwrap();
        committer
            .stage(&mut log, vec![request], &writes, &[], at)
            .unwrap();
        answers.push(answer);
    }
    assert!(committer.take_landed(&mut log, None, true).is_err());
    let got: Vec<_> = answers
        .into_iter()
        .map(|a| a.blocking_recv().unwrap().pop().unwrap())
        .collect();
    assert!(matches!(&got[0], Ok(c) if c.index == 0 && c.checkpoint.size == 1));
    for later in &got[1..] {
        assert!(
            matches!(later, Err(SubmitError::Failed(e)) if e == "disk full"),
            "{later:?}"
        );
    }
    assert!(!shared.is_ready());
    assert_eq!(
        shared.checkpoint().size,
        1,
        "nothing after the failure published"
    );
    assert!(log
        .stage_linked(&[earn("e9", 1)], &[], LogTime::MAX)
        .is_err());
    committer.finish(&mut log, None);
    drop(log);
    let reopened = Log::open(dir.path(), signer()).unwrap();
    assert_eq!(reopened.size(), 1);
}
