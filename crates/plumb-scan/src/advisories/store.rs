//! The advisory store: OSV records indexed by package, in one redb file.
//!
//! Tables: `affected` maps `(ecosystem base name, package name)` to the JSON
//! of that package's [`AffectedEntry`] list; `meta` holds the
//! [`StoreMeta`] fields. An import builds a whole new file beside the old
//! one (`osv.redb.new`), commits it (redb fsyncs), fsyncs it again, renames
//! it over `osv.redb` and fsyncs the directory: a reader sees the old store
//! or the new one, and a crash at any point leaves the old one in place.
//! Readers open the file read-only with a shared lock, so scans run side by
//! side, and an import never waits for them.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use redb::{ReadableDatabase as _, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::osv::{AffectedEntry, OsvRecord};
use super::{AdvisoryError, InvalidRecord, Result};

const AFFECTED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("affected");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// The store's file name inside its directory.
pub const STORE_FILE: &str = "osv.redb";
/// The layout version written to `meta`; a store of another layout is refused.
const LAYOUT: &str = "1";
/// Records larger than this are refused (no real OSV record comes close).
const MAX_RECORD_BYTES: u64 = 32 << 20;

/// What an imported store is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// `sha256:<hex>` over the input records (see [`content_digest`]).
    pub digest: String,
    /// How many records were indexed (withdrawn and skipped ones not counted).
    pub advisories: u64,
    /// How many (ecosystem, package) keys the index holds.
    pub packages: u64,
    /// When the import ran (RFC 3339, UTC).
    pub imported: String,
    /// What was imported, as given.
    pub source: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// The new store's metadata.
    pub meta: StoreMeta,
    /// How many `*.json` files were read.
    pub files: u64,
    /// How many withdrawn records were left out.
    pub withdrawn: u64,
    /// Invalid records left out (only with `skip_invalid`).
    pub skipped: Vec<InvalidRecord>,
}

/// How to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Leave invalid records out instead of failing the import.
    pub skip_invalid: bool,
}

/// One input record: its path (relative, `/`-separated; a zip entry's name)
/// and its bytes.
type Input = (String, Vec<u8>);

/// The content digest of a set of records: SHA-256 over the records sorted
/// by path (bytewise), each fed as its path in UTF-8, one NUL byte, its
/// length as an unsigned 64-bit big-endian number, then its bytes. Paths
/// are relative to the imported directory (with `/` separators) or a zip
/// entry's name, so a directory and a zip of the same files have one digest.
pub fn content_digest(records: &[(String, Vec<u8>)]) -> String {
    let mut sorted: Vec<&(String, Vec<u8>)> = records.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (path, bytes) in sorted {
        h.update(path.as_bytes());
        h.update([0u8]);
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Read every `*.json` record under `input`: a directory (recursively,
/// skipping names that start with `.`) or a `.zip` archive.
pub fn read_input(input: &Path) -> Result<Vec<Input>> {
    let io = |source| AdvisoryError::Io {
        path: input.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(input).map_err(io)?;
    let records = if meta.is_dir() {
        let mut out = Vec::new();
        walk(input, "", &mut out)?;
        out
    } else {
        read_zip(input)?
    };
    if records.is_empty() {
        return Err(AdvisoryError::Empty {
            path: input.to_path_buf(),
        });
    }
    Ok(records)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Input>) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AdvisoryError::Io { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<std::io::Result<_>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = format!("{prefix}{name}");
        // Follows symlinks, as a person pointing at a tree expects.
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk(&path, &format!("{rel}/"), out)?;
        } else if meta.is_file() && name.ends_with(".json") {
            if meta.len() > MAX_RECORD_BYTES {
                return Err(AdvisoryError::TooLarge { path: rel });
            }
            out.push((rel, std::fs::read(&path).map_err(io(&path))?));
        }
    }
    Ok(())
}

fn read_zip(path: &Path) -> Result<Vec<Input>> {
    let zip_err = |source| AdvisoryError::Zip {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| AdvisoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_err)?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_err)?;
        let name = entry.name().map_err(zip_err)?.to_string();
        if !entry.is_file() || !name.ends_with(".json") {
            continue;
        }
        if entry.size() > MAX_RECORD_BYTES {
            return Err(AdvisoryError::TooLarge { path: name });
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        (&mut entry)
            .take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| AdvisoryError::Zip {
                path: path.to_path_buf(),
                source: zip::result::ZipError::Io(e),
            })?;
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(AdvisoryError::TooLarge { path: name });
        }
        out.push((name, bytes));
    }
    Ok(out)
}

/// Import the OSV records under `input` (a directory or a `.zip`) into a
/// new store at `dir/osv.redb`, replacing the old one atomically. With
/// invalid records and without `skip_invalid`, fails naming each (file,
/// line, column) and leaves the old store as it was.
pub fn import(input: &Path, dir: &Path, options: ImportOptions) -> Result<ImportSummary> {
    let records = read_input(input)?;
    let digest = content_digest(&records);
    let mut index: BTreeMap<(String, String), Vec<AffectedEntry>> = BTreeMap::new();
    let mut invalid = Vec::new();
    let (mut advisories, mut withdrawn) = (0u64, 0u64);
    for (path, bytes) in &records {
        let record: OsvRecord = match serde_json::from_slice(bytes) {
            Ok(r) => r,
            Err(e) => {
                invalid.push(InvalidRecord {
                    file: path.clone(),
                    line: e.line(),
                    column: e.column(),
                    message: strip_position(&e.to_string()),
                });
                continue;
            }
        };
        if record.withdrawn.as_deref().is_some_and(|w| !w.is_empty()) {
            withdrawn += 1;
            continue;
        }
        advisories += 1;
        for (key, entry) in record.entries() {
            index.entry(key).or_default().push(entry);
        }
    }
    if !invalid.is_empty() && !options.skip_invalid {
        return Err(AdvisoryError::Invalid { records: invalid });
    }
    let meta = StoreMeta {
        digest,
        advisories,
        packages: index.len() as u64,
        imported: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string(),
        source: input.display().to_string(),
    };
    write_store(dir, &index, &meta)?;
    Ok(ImportSummary {
        meta,
        files: records.len() as u64,
        withdrawn,
        skipped: invalid,
    })
}

/// serde_json appends " at line L column C"; plumb prints the position first.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn write_store(
    dir: &Path,
    index: &BTreeMap<(String, String), Vec<AffectedEntry>>,
    meta: &StoreMeta,
) -> Result<()> {
    let final_path = dir.join(STORE_FILE);
    let new_path = dir.join(format!("{STORE_FILE}.new"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AdvisoryError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    match std::fs::remove_file(&new_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&new_path)(e)),
    }
    let store_err = |e: &dyn std::fmt::Display| AdvisoryError::Store {
        path: new_path.clone(),
        message: e.to_string(),
    };
    {
        let db = redb::Database::create(&new_path).map_err(|e| store_err(&e))?;
        let txn = db.begin_write().map_err(|e| store_err(&e))?;
        {
            let mut table = txn.open_table(AFFECTED).map_err(|e| store_err(&e))?;
            for ((eco, name), entries) in index {
                let value = serde_json::to_vec(entries).map_err(|e| store_err(&e))?;
                table
                    .insert((eco.as_str(), name.as_str()), value.as_slice())
                    .map_err(|e| store_err(&e))?;
            }
            let mut m = txn.open_table(META).map_err(|e| store_err(&e))?;
            let advisories = meta.advisories.to_string();
            let packages = meta.packages.to_string();
            for (k, v) in [
                ("layout", LAYOUT),
                ("digest", meta.digest.as_str()),
                ("advisories", advisories.as_str()),
                ("packages", packages.as_str()),
                ("imported", meta.imported.as_str()),
                ("source", meta.source.as_str()),
            ] {
                m.insert(k, v).map_err(|e| store_err(&e))?;
            }
        }
        txn.commit().map_err(|e| store_err(&e))?;
    }
    std::fs::File::open(&new_path)
        .and_then(|f| f.sync_all())
        .map_err(io(&new_path))?;
    std::fs::rename(&new_path, &final_path).map_err(io(&final_path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// An imported advisory store, open for reading.
pub struct AdvisoryStore {
    db: redb::ReadOnlyDatabase,
    path: PathBuf,
    meta: StoreMeta,
}

impl std::fmt::Debug for AdvisoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdvisoryStore")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .finish()
    }
}

impl AdvisoryStore {
    /// Open the store imported into `dir` (its `osv.redb`).
    pub fn open(dir: &Path) -> Result<AdvisoryStore> {
        let path = dir.join(STORE_FILE);
        if !path.is_file() {
            return Err(AdvisoryError::NoStore { path });
        }
        let store_err = |e: &dyn std::fmt::Display| AdvisoryError::Store {
            path: path.clone(),
            message: e.to_string(),
        };
        let db = redb::ReadOnlyDatabase::open(&path).map_err(|e| store_err(&e))?;
        let meta = {
            let txn = db.begin_read().map_err(|e| store_err(&e))?;
            let table = txn.open_table(META).map_err(|e| store_err(&e))?;
            let get = |k: &str| -> Result<String> {
                Ok(table
                    .get(k)
                    .map_err(|e| store_err(&e))?
                    .map(|v| v.value().to_string())
                    .unwrap_or_default())
            };
            let layout = get("layout")?;
            if layout != LAYOUT {
                return Err(store_err(&format!(
                    "store layout {layout:?} is not {LAYOUT:?}; import the advisories again"
                )));
            }
            StoreMeta {
                digest: get("digest")?,
                advisories: get("advisories")?.parse().unwrap_or(0),
                packages: get("packages")?.parse().unwrap_or(0),
                imported: get("imported")?,
                source: get("source")?,
            }
        };
        Ok(AdvisoryStore { db, path, meta })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was imported.
    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    /// The entries for `name` in the ecosystem with base name `ecosystem`
    /// (`Debian`, `Go`, `PyPI`), every release together.
    pub fn lookup(&self, ecosystem: &str, name: &str) -> Result<Vec<AffectedEntry>> {
        let store_err = |e: &dyn std::fmt::Display| AdvisoryError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let key = super::osv::index_name(ecosystem, name);
        let txn = self.db.begin_read().map_err(|e| store_err(&e))?;
        let table = txn.open_table(AFFECTED).map_err(|e| store_err(&e))?;
        let Some(value) = table
            .get((ecosystem, key.as_str()))
            .map_err(|e| store_err(&e))?
        else {
            return Ok(Vec::new());
        };
        serde_json::from_slice(value.value()).map_err(|e| store_err(&e))
    }
}
