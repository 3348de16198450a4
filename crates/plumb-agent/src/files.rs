//! Application files: read at start, re-read when one changes.
//!
//! The files are checked by size and modification time every
//! `file_check_interval`; a changed definition refreshes its Application, a
//! new one is added and reconciled, a removed one is dropped with its objects
//! left in place (as Argo CD does without the cascade finalizer). A file that
//! no longer parses keeps the previous definitions in use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::agent::Agent;
use crate::error::AgentError;
use crate::state::{Reason, Slot, initial_status, lock_write};
use crate::status::AppStatus;

impl Agent {
    pub(crate) fn file_signature(&self) -> Vec<(PathBuf, SystemTime, u64)> {
        let mut out = Vec::new();
        for p in &self.inner.config.app_paths {
            let mut push = |f: &std::path::Path| {
                if let Ok(m) = std::fs::metadata(f) {
                    out.push((
                        f.to_path_buf(),
                        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        m.len(),
                    ));
                }
            };
            if p.is_dir() {
                if let Ok(rd) = std::fs::read_dir(p) {
                    let mut files: Vec<PathBuf> =
                        rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    files.sort();
                    for f in files {
                        push(&f);
                    }
                }
            } else {
                push(p);
            }
        }
        out
    }

    /// Re-read the Application files when they changed (or always on `force`).
    pub(crate) fn reload_files(&self, force: bool) -> Result<(), AgentError> {
        let sig = self.file_signature();
        {
            let mut last = match self.inner.files_signature.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if !force && *last == sig {
                return Ok(());
            }
            *last = sig;
        }
        let files = plumb_render::application::load_paths(&self.inner.config.app_paths)?;
        for f in &files {
            for w in &f.warnings {
                tracing::warn!(file = %f.origin, "{w}");
            }
        }
        let stored: HashMap<String, AppStatus> = self
            .inner
            .store
            .statuses()
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        let mut to_trigger = Vec::new();
        {
            let mut apps = lock_write(&self.inner.apps);
            let mut seen = std::collections::BTreeSet::new();
            for f in files {
                let key = f.application.key();
                if !seen.insert(key.clone()) {
                    tracing::error!(app = %key, file = %f.origin, "defined twice; the first definition wins");
                    continue;
                }
                match apps.get_mut(&key) {
                    Some(slot) if slot.file.application == f.application => {}
                    Some(slot) => {
                        let mut status = initial_status(&f);
                        status.revision = slot.status.revision.clone();
                        status.git_revision = slot.status.git_revision.clone();
                        slot.status = status;
                        slot.file = f;
                        slot.commits.clear();
                        slot.redefined = true;
                        to_trigger.push(key);
                    }
                    None => {
                        let mut status = initial_status(&f);
                        if let Some(old) = stored.get(&key) {
                            status.revision = old.revision.clone();
                            status.last_sync = old.last_sync;
                        }
                        apps.insert(key.clone(), Slot::new(f, status));
                        to_trigger.push(key);
                    }
                }
            }
            // Applications from cluster objects are the object watch's.
            let gone: Vec<String> = apps
                .iter()
                .filter(|(k, s)| !seen.contains(*k) && !crate::objects::from_cluster(s))
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                tracing::info!(app = %k, "Application removed from its files; its objects are left in place");
                apps.remove(&k);
            }
        }
        for k in to_trigger {
            self.trigger(&k, Reason::Refresh);
        }
        self.update_gauges();
        Ok(())
    }
}
