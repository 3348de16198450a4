//! Notifications: webhooks on sync and health events.
//!
//! Configured from a YAML file:
//!
//! ```yaml
//! webhooks:
//! - name: team-chat
//!   url: https://hooks.slack.com/services/...
//!   format: slack            # or json (default)
//!   events: [sync-succeeded, sync-failed, health-degraded, drift-detected, policy-denied, secrets-refused]
//! ```
//!
//! Events go into a bounded queue that a background task drains, retrying each
//! delivery with exponential backoff; a full queue drops the event with a
//! warning. Reconciliation never waits for a notification.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The kinds of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A sync finished without failures.
    SyncSucceeded,
    /// A sync failed.
    SyncFailed,
    /// An Application became Degraded.
    HealthDegraded,
    /// The cluster drifted from Git.
    DriftDetected,
    /// The deploy gate refused the commit; nothing was applied.
    PolicyDenied,
    /// The secret scan refused the commit (plaintext secrets in Git);
    /// nothing was applied. The message names places and rules, never values.
    SecretsRefused,
}

/// One notification.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// The Application (`namespace/name`).
    pub application: String,
    /// The commit concerned.
    pub revision: String,
    /// Details.
    pub message: String,
    /// When (seconds since the epoch).
    pub time: i64,
}

/// Payload shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The [`Event`] as JSON.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`{"text": ...}`).
    Slack,
}

/// One webhook target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A name for logs.
    #[serde(default)]
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// Payload shape.
    #[serde(default)]
    pub format: Format,
    /// Which events (default: all).
    #[serde(default)]
    pub events: Vec<EventKind>,
}

/// The notifications file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NotificationConfig {
    /// Webhook targets.
    #[serde(default)]
    pub webhooks: Vec<Target>,
}

impl NotificationConfig {
    /// Read a notifications file.
    pub fn load(path: &Path) -> Result<NotificationConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Sends notifications in the background.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Event>>,
}

/// Most events waiting to be sent.
const QUEUE: usize = 1024;

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { tx: None }
    }

    /// Start the delivery task for `config`.
    pub fn start(config: NotificationConfig) -> Notifier {
        if config.webhooks.is_empty() {
            return Notifier::disabled();
        }
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build();
        let Ok(client) = client else {
            tracing::warn!("notifications disabled: cannot build an HTTP client");
            return Notifier::disabled();
        };
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                for target in &config.webhooks {
                    if !target.events.is_empty() && !target.events.contains(&event.event) {
                        continue;
                    }
                    let client = client.clone();
                    let target = target.clone();
                    let event = event.clone();
                    tokio::spawn(async move { deliver(&client, &target, &event).await });
                }
            }
        });
        Notifier { tx: Some(tx) }
    }

    /// Queue an event; never waits.
    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.tx
            && tx.try_send(event).is_err()
        {
            tracing::warn!("notification queue full; an event was dropped");
        }
    }
}

fn payload(target: &Target, e: &Event) -> serde_json::Value {
    match target.format {
        Format::Json => serde_json::to_value(e).unwrap_or_default(),
        Format::Slack => {
            let icon = match e.event {
                EventKind::SyncSucceeded => ":white_check_mark:",
                EventKind::SyncFailed => ":x:",
                EventKind::HealthDegraded => ":warning:",
                EventKind::DriftDetected => ":mag:",
                EventKind::PolicyDenied => ":no_entry:",
                EventKind::SecretsRefused => ":lock:",
            };
            let what = serde_json::to_value(e.event)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let short = &e.revision[..e.revision.len().min(7)];
            serde_json::json!({
                "text": format!("{icon} *{}* {what} at `{short}`: {}", e.application, e.message),
            })
        }
    }
}

async fn deliver(client: &reqwest::Client, target: &Target, e: &Event) {
    let body = payload(target, e);
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=6 {
        match client.post(&target.url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(target = %target.name, status = %r.status(), attempt, "notification refused")
            }
            Err(err) => {
                tracing::warn!(target = %target.name, error = %err.without_url(), attempt, "notification failed")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    tracing::warn!(target = %target.name, "notification given up after 6 attempts");
}
