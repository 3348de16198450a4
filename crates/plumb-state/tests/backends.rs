//! Both state backends: atomic snapshots, the journal, and the lock (holder
//! info, waiting, stale takeover, force-unlock). PostgreSQL runs for real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use plumb_state::{
    AnyBackend, InstanceState, JournalRecord, LocalBackend, LockInfo, LockLease, PgBackend,
    ResourceKey, StateBackend, StateError, StateSnapshot,
};

fn key(name: &str) -> ResourceKey {
    ResourceKey {
        module: None,
        mode: "managed".into(),
        ty: "random_id".into(),
        name: name.into(),
        provider: "provider[\"registry.terraform.io/hashicorp/random\"]".into(),
    }
}

fn instance(i: i64) -> InstanceState {
    InstanceState {
        index_key: Some(serde_json::json!(i)),
        schema_version: 0,
        attributes: serde_json::json!({"id": format!("id-{i}")}),
        sensitive_attributes: vec![],
        private: None,
        dependencies: vec![],
        create_before_destroy: false,
    }
}

/// What a test holder of the lock writes, for operation `op`.
fn info(op: &str) -> LockInfo {
    LockInfo::for_operation(op, "x", "test", "test")
}

/// Takes `b`'s lock as a test holder of `op`, waiting at most `wait`.
async fn lock(b: &AnyBackend, op: &str, wait: Duration) -> Result<LockLease, StateError> {
    b.lock(info(op), wait).await
}

async fn exercise_state(b: &AnyBackend) {
    assert!(b.read().await.unwrap().is_none());
    let mut s = StateSnapshot::new("test");
    s.serial = 1;
    b.write(&s).await.unwrap();
    let records: Vec<JournalRecord> = (0..5)
        .map(|i| JournalRecord {
            resource: key("a"),
            index_key: Some(serde_json::json!(i)),
            instance: Some(instance(i)),
        })
        .collect();
    b.append(&s, &records[..3]).await.unwrap();
    b.append(&s, &records[3..]).await.unwrap();
    b.append(
        &s,
        &[JournalRecord {
            resource: key("a"),
            index_key: Some(serde_json::json!(1)),
            instance: None,
        }],
    )
    .await
    .unwrap();
    let read = b.read().await.unwrap().unwrap();
    assert_eq!(read.serial, 2, "a replayed journal makes a newer serial");
    assert_eq!(read.lineage, s.lineage);
    let keys: Vec<_> = read.resources[0]
        .instances
        .iter()
        .map(|i| i.index_key.clone().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec![
            serde_json::json!(0),
            serde_json::json!(2),
            serde_json::json!(3),
            serde_json::json!(4)
        ]
    );
    // A full write folds the journal in; the old journal no longer applies.
    b.write(&read).await.unwrap();
    let again = b.read().await.unwrap().unwrap();
    assert_eq!(again, read);
}

async fn exercise_lock(b: &AnyBackend, other: &AnyBackend) {
    let lease = lock(b, "OperationTypeApply", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(lease.took_over.is_none());
    let err = lock(other, "OperationTypePlan", Duration::from_millis(500))
        .await
        .err()
        .expect("a held lock refuses a second holder");
    match err {
        StateError::Locked(holder) => {
            assert_eq!(holder.id, lease.info.id);
            assert_eq!(holder.operation, "OperationTypeApply");
            assert_eq!(holder.pid, std::process::id());
        }
        e => panic!("expected Locked, got {e}"),
    }
    let id = lease.info.id.clone();
    b.unlock(lease).await.unwrap();
    let second = lock(other, "OperationTypePlan", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(second.took_over.is_none(), "a released lock is not stale");
    assert!(
        other.force_unlock(&id).await.is_err(),
        "force-unlock checks the id"
    );
    let forced = other.force_unlock(&second.info.id).await.unwrap();
    assert_eq!(forced.id, second.info.id);
    // After force-unlock a new holder gets the lock at once.
    let third = lock(b, "OperationTypeApply", Duration::from_secs(5))
        .await
        .unwrap();
    b.unlock(third).await.unwrap();
    drop(second);
}

#[tokio::test]
async fn local_state_and_journal() {
    let dir = tempfile::tempdir().unwrap();
    let b = AnyBackend::Local(LocalBackend::new(dir.path().join("terraform.tfstate")));
    exercise_state(&b).await;
    assert!(dir.path().join("terraform.tfstate.backup").exists());
}

#[tokio::test]
async fn local_lock_names_holder_and_takes_over_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terraform.tfstate");
    let a = AnyBackend::Local(LocalBackend::new(&path));
    let b = AnyBackend::Local(LocalBackend::new(&path));
    exercise_lock(&a, &b).await;
    // A holder that died leaves its info behind but not its OS lock.
    let mut dead = info("OperationTypeApply");
    dead.pid = 999_999;
    std::fs::write(
        dir.path().join(".terraform.tfstate.lock.info"),
        serde_json::to_vec(&dead).unwrap(),
    )
    .unwrap();
    let lease = lock(&a, "OperationTypeApply", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        lease.took_over.as_ref().map(|i| i.id.clone()),
        Some(dead.id)
    );
    a.unlock(lease).await.unwrap();
    assert!(!dir.path().join(".terraform.tfstate.lock.info").exists());
}

#[tokio::test]
async fn postgres_state_journal_and_lock() {
    let pg = support::postgres::TestPostgres::start();
    let a = AnyBackend::Pg(PgBackend::new(pg.conn_str()));
    let b = AnyBackend::Pg(PgBackend::new(pg.conn_str()));
    exercise_state(&a).await;
    exercise_lock(&a, &b).await;
    // A holder whose session died: its row stays, its advisory lock is gone.
    let lease = lock(&a, "OperationTypeApply", Duration::from_secs(1))
        .await
        .unwrap();
    let id = lease.info.id.clone();
    drop(lease); // connection and renewal task end without unlocking
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = lock(&b, "OperationTypeApply", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(next.took_over.map(|i| i.id), Some(id));
}
