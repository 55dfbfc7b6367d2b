//! `piha switchover --to pi-2`: asks a node's admin API for a switchover.
//! Any node will do: one that is not the VRRP master answers with the
//! master's address, and the request is sent there once.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::cli::SwitchoverArgs;
use crate::node::peer_api::PeerApi;

/// Longer than the switchover's own bound on the node (180 s).
const LIMIT: Duration = Duration::from_secs(200);

pub fn run(args: &SwitchoverArgs) -> anyhow::Result<()> {
    let path = crate::config::find_config(args.config.as_deref())?;
    let config = crate::config::load(&path)?;
    let token = config
        .admin_token
        .clone()
        .context("the cluster file has no admin_token; a switchover needs it")?;
    let base = match &args.url {
        Some(u) => u.clone(),
        None => crate::status::client::own_node_url(Some(&path)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let api = PeerApi::new(Some(token));
    let answer = rt.block_on(async {
        match ask(&api, &base, &args.to).await {
            Err(Failure::AskMaster(master)) => {
                match ask(&api, &format!("http://{master}"), &args.to).await {
                    Ok(v) => Ok(v),
                    Err(Failure::AskMaster(m)) => Err(format!(
                        "the VRRP master moved while asking (now {m}); try again"
                    )),
                    Err(Failure::Failed(e)) => Err(e),
                }
            }
            Err(Failure::Failed(e)) => Err(e),
            Ok(v) => Ok(v),
        }
    });
    let report = match answer {
        Ok(r) => r,
        Err(e) => bail!("switchover to {} failed: {e}", args.to),
    };
    println!(
        "switched over from {} to {} in {} ms (the new primary replayed up to {})",
        report["from"].as_str().unwrap_or("?"),
        report["to"].as_str().unwrap_or("?"),
        report["total_ms"],
        report["lsn"].as_str().unwrap_or("?")
    );
    for step in report["steps"].as_array().into_iter().flatten() {
        println!(
            "  {:>6} ms  {}",
            step[1].as_u64().unwrap_or(0),
            step[0].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

enum Failure {
    /// A node that is not the VRRP master named the master's admin address.
    AskMaster(String),
    Failed(String),
}

async fn ask(api: &PeerApi, base: &str, to: &str) -> Result<Value, Failure> {
    let uri: hyper::Uri = base
        .parse()
        .map_err(|_| Failure::Failed(format!("not a URL: {base}")))?;
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let addr: std::net::SocketAddr = host.parse().map_err(|_| {
        Failure::Failed(format!(
            "{base}: give the admin URL as http://<address>:<port>"
        ))
    })?;
    api.post(addr, "/api/v1/db/switchover", json!({"to": to}), LIMIT)
        .await
        .map_err(|e| {
            // A node that is not the master names it in its refusal.
            match e.body.as_ref().and_then(|b| b["master_admin"].as_str()) {
                Some(master) if master != host => Failure::AskMaster(master.to_owned()),
                _ => Failure::Failed(e.message),
            }
        })
}
