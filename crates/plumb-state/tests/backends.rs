//! Both state backends: atomic snapshots, the journal, and the lock (holder
//! info, waiting, stale takeover, force-unlock). PostgreSQL runs for real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use plumb_secrets::sealed::{self, Recipients, SealError};
use plumb_secrets::sops::{Keyring, generate_identity};
use plumb_state::{
    AnyBackend, CipherError, InstanceState, JournalRecord, LocalBackend, LockInfo, LockLease,
    PgBackend, ResourceKey, StateBackend, StateCipher, StateEncryption, StateError, StateSnapshot,
};
use zeroize::Zeroizing;

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
        attributes: serde_json::json!({"id": format!("id-{i}"), "secret": format!("attr-marker-{i}")}),
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

/// An age cipher as plumb-infra builds one: sealed for `recipients`, opened
/// with `keys`.
struct Age {
    recipients: Recipients,
    keys: Keyring,
}

impl StateCipher for Age {
    fn method(&self) -> &str {
        "age"
    }
    fn key_provider(&self) -> &str {
        "key_provider.age.test"
    }
    fn recipients(&self) -> Vec<String> {
        self.recipients.to_strings()
    }
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        self.recipients
            .seal(plaintext)
            .map_err(|e| CipherError::Failed(e.to_string()))
    }
    fn open(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CipherError> {
        sealed::open(&self.keys, ciphertext).map_err(|e| match e {
            SealError::NoMatchingKey => CipherError::NoMatchingKey,
            SealError::NoKeys => CipherError::NoKeys,
            other => CipherError::Failed(other.to_string()),
        })
    }
}

/// Two age identities: the one state is sealed for, and a stranger.
struct Keys {
    recipient: String,
    own: Keyring,
    stranger: Keyring,
}

fn keys() -> Keys {
    let (own, recipient) = generate_identity();
    let (stranger, _) = generate_identity();
    Keys {
        recipient,
        own: Keyring::from_text(&own, "own").unwrap(),
        stranger: Keyring::from_text(&stranger, "stranger").unwrap(),
    }
}

fn encryption(k: &Keys, opener: &Keyring, enforced: bool) -> Option<StateEncryption> {
    let cipher = Age {
        recipients: Recipients::parse(std::slice::from_ref(&k.recipient)).unwrap(),
        keys: opener.clone(),
    };
    Some(StateEncryption::new(Arc::new(cipher), enforced))
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every stored byte of an encrypted local state: nothing but serial and
/// lineage readable, in the snapshot, the journal and the backup.
#[tokio::test]
async fn local_state_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terraform.tfstate");
    let k = keys();
    let local = |enc: Option<StateEncryption>| {
        AnyBackend::Local(LocalBackend::new(&path).with_encryption(enc))
    };
    let b = local(encryption(&k, &k.own, true));
    // The journal, before it is folded in, is sealed too.
    let mut s = StateSnapshot::new("test");
    s.serial = 1;
    b.write(&s).await.unwrap();
    let records: Vec<JournalRecord> = (0..3)
        .map(|i| JournalRecord {
            resource: key("a"),
            index_key: Some(serde_json::json!(i)),
            instance: Some(instance(i)),
        })
        .collect();
    b.append(&s, &records).await.unwrap();
    let journal = std::fs::read(dir.path().join("terraform.tfstate.journal")).unwrap();
    assert!(!contains(&journal, "attr-marker") && !contains(&journal, "random_id"));
    assert!(
        contains(&journal, &s.lineage),
        "the journal's lineage stays readable"
    );
    exercise_state_after(&b, &s).await;
    for file in ["terraform.tfstate", "terraform.tfstate.backup"] {
        let raw = std::fs::read(dir.path().join(file)).unwrap();
        assert!(!contains(&raw, "attr-marker"), "{file} holds an attribute");
        assert!(!contains(&raw, "random_id"), "{file} holds a resource type");
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert!(
            v["serial"].is_u64() && v["lineage"] == s.lineage.as_str(),
            "{v}"
        );
        assert!(
            v.get("version").is_none(),
            "no tool may read it as a v4 state"
        );
        assert_eq!(v["encryption"]["recipients"][0], k.recipient.as_str());
    }

    // Without the identity, with a stranger's, without the configuration.
    for opener in [Keyring::new(), k.stranger.clone()] {
        let e = local(encryption(&k, &opener, true))
            .read()
            .await
            .unwrap_err();
        assert!(matches!(e, StateError::Undecryptable { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&k.recipient) && text.contains("terraform.tfstate"),
            "{text}"
        );
    }
    let e = local(None).read().await.unwrap_err();
    assert!(matches!(e, StateError::Encrypted { .. }), "{e}");

    // The readable serial cannot be moved without the sealed one.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["serial"] = serde_json::json!(99);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let e = b.read().await.unwrap_err();
    assert!(matches!(e, StateError::Corrupt(_)), "{e}");
}

/// Writes the journal of `base` then folds it into a snapshot, reading
/// back the same state.
async fn exercise_state_after(b: &AnyBackend, base: &StateSnapshot) {
    let read = b.read().await.unwrap().unwrap();
    assert_eq!(read.serial, base.serial + 1);
    assert_eq!(read.resources[0].instances.len(), 3);
    b.write(&read).await.unwrap();
    assert_eq!(b.read().await.unwrap().unwrap(), read);
}

/// `enforced` refuses a plaintext state; without it the plaintext state is
/// read and the next write seals it (and its backup).
#[tokio::test]
async fn plaintext_state_refused_when_enforced_and_migrated_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terraform.tfstate");
    let k = keys();
    let plain = AnyBackend::Local(LocalBackend::new(&path));
    let mut s = StateSnapshot::new("test");
    s.serial = 1;
    s.put_instance(key("a"), instance(7));
    plain.write(&s).await.unwrap();
    assert!(contains(&std::fs::read(&path).unwrap(), "attr-marker-7"));

    let enforced =
        AnyBackend::Local(LocalBackend::new(&path).with_encryption(encryption(&k, &k.own, true)));
    let e = enforced.read().await.unwrap_err();
    assert!(matches!(e, StateError::Plaintext { .. }), "{e}");
    assert!(
        contains(&std::fs::read(&path).unwrap(), "attr-marker-7"),
        "a refusal changes nothing"
    );

    let migrating =
        AnyBackend::Local(LocalBackend::new(&path).with_encryption(encryption(&k, &k.own, false)));
    let mut read = migrating.read().await.unwrap().unwrap();
    assert_eq!(read, s);
    read.serial += 1;
    migrating.write(&read).await.unwrap();
    for file in ["terraform.tfstate", "terraform.tfstate.backup"] {
        let raw = std::fs::read(dir.path().join(file)).unwrap();
        assert!(
            !contains(&raw, "attr-marker-7"),
            "{file} is still plaintext"
        );
    }
    assert_eq!(enforced.read().await.unwrap().unwrap(), read);
}

/// Every stored state row and journal row, as text.
async fn dump(client: &tokio_postgres::Client) -> String {
    let mut all = String::new();
    for q in [
        "SELECT serial::text || ' ' || lineage || ' ' || data FROM plumb_states",
        "SELECT record FROM plumb_state_journal",
    ] {
        for row in client.query(q, &[]).await.unwrap() {
            all.push_str(&row.get::<_, String>(0));
        }
    }
    all
}

#[tokio::test]
async fn postgres_state_encrypted_at_rest() {
    let pg = support::postgres::TestPostgres::start();
    let k = keys();
    let b =
        AnyBackend::Pg(PgBackend::new(pg.conn_str()).with_encryption(encryption(&k, &k.own, true)));
    let mut s = StateSnapshot::new("test");
    s.serial = 1;
    b.write(&s).await.unwrap();
    let records: Vec<JournalRecord> = (0..3)
        .map(|i| JournalRecord {
            resource: key("a"),
            index_key: Some(serde_json::json!(i)),
            instance: Some(instance(i)),
        })
        .collect();
    b.append(&s, &records).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&pg.conn_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let journalled = dump(&client).await;
    assert!(!journalled.contains("attr-marker") && !journalled.contains("random_id"));
    exercise_state_after(&b, &s).await;
    let folded = dump(&client).await;
    assert!(
        !folded.contains("attr-marker") && !folded.contains("random_id"),
        "{folded}"
    );
    assert!(folded.contains(&s.lineage));
    let stranger = AnyBackend::Pg(PgBackend::new(pg.conn_str()).with_encryption(encryption(
        &k,
        &k.stranger,
        true,
    )));
    let e = stranger.read().await.unwrap_err();
    assert!(e.to_string().contains(&k.recipient), "{e}");
    let e = AnyBackend::Pg(PgBackend::new(pg.conn_str()))
        .read()
        .await
        .unwrap_err();
    assert!(matches!(e, StateError::Encrypted { .. }), "{e}");
}
