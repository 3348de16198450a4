//! Commands that talk to a running agent: `plumb history`, `rollback`, `resume`.

use std::process::ExitCode;

use clap::Args;
use miette::IntoDiagnostic;
use serde_json::Value;

use crate::gitops::Output;

/// How to reach the agent.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The agent's address.
    #[arg(long, env = "PLUMB_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API token (or PLUMB_TOKEN).
    #[arg(long, env = "PLUMB_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(args: &ServerArgs) -> miette::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder().build().into_diagnostic()?,
            base: args.server.trim_end_matches('/').to_string(),
            token: args.token.clone().filter(|t| !t.is_empty()),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> miette::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            miette::miette!(
                help = "start one with `plumb agent APPS...`, or pass --server (or PLUMB_SERVER)",
                "no plumb agent answers at {}: {}",
                self.base,
                e.without_url()
            )
        })?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"].as_str().unwrap_or("").to_string();
        let help = match status.as_u16() {
            401 => "pass an API token with --token or PLUMB_TOKEN (`plumb token create`)",
            403 => "this needs an admin token (`plumb token create --role admin`)",
            404 => "check the Application name (`plumb status` or the UI lists them)",
            _ => "see the agent's log for details",
        };
        Err(miette::miette!(
            help = help,
            "{} {}: {}",
            status.as_u16(),
            path,
            message
        ))
    }
}

fn encode(name: &str) -> String {
    name.replace('%', "%25")
        .replace('/', "%2F")
        .replace(' ', "%20")
}

fn short(s: &str) -> &str {
    &s[..s.len().min(7)]
}

/// `plumb history` arguments.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The Application's name.
    app: String,
    #[command(flatten)]
    server: ServerArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

/// Print an Application's sync history.
pub async fn history(args: HistoryArgs) -> miette::Result<ExitCode> {
    let c = Client::new(&args.server)?;
    let v = c
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/applications/{}/history", encode(&args.app)),
            None,
        )
        .await?;
    if args.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&v["items"]).into_diagnostic()?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<4} {:<8} {:<10} {:<10} {:<20} MESSAGE",
        "ID", "REVISION", "RESULT", "TRIGGER", "AUTHOR"
    );
    for h in v["items"].as_array().into_iter().flatten() {
        println!(
            "{:<4} {:<8} {:<10} {:<10} {:<20} {}",
            h["id"],
            short(h["revision"].as_str().unwrap_or("")),
            h["result"].as_str().unwrap_or(""),
            h["trigger"].as_str().unwrap_or(""),
            h["author"].as_str().unwrap_or(""),
            h["message"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `plumb rollback` arguments.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The Application's name.
    app: String,
    /// A commit SHA, or a history id from `plumb history`.
    revision: String,
    #[command(flatten)]
    server: ServerArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

/// Sync an older commit and pause automated sync.
pub async fn rollback(args: RollbackArgs) -> miette::Result<ExitCode> {
    let c = Client::new(&args.server)?;
    let v = c
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/applications/{}/rollback", encode(&args.app)),
            Some(serde_json::json!({"revision": args.revision})),
        )
        .await?;
    let ok = v["succeeded"].as_bool().unwrap_or(false);
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v).into_diagnostic()?);
    } else {
        println!(
            "{} rolled {} back to {}; automated sync is paused until `plumb resume {}`",
            if ok { "✓" } else { "✗" },
            args.app,
            short(v["revision"].as_str().unwrap_or("")),
            args.app
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `plumb resume` arguments.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The Application's name.
    app: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Resume automated sync after a rollback.
pub async fn resume(args: ResumeArgs) -> miette::Result<ExitCode> {
    let c = Client::new(&args.server)?;
    let v = c
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/applications/{}/resume", encode(&args.app)),
            None,
        )
        .await?;
    if v["wasSuspended"].as_bool() == Some(true) {
        println!("resumed {}: it follows Git again", args.app);
    } else {
        println!("{} was not paused; it follows Git", args.app);
    }
    Ok(ExitCode::SUCCESS)
}
