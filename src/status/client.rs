//! `piha status`: fetch a node's `/api/v1/status` and print it as a table a
//! person reads in a terminal.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::api::StatusDoc;
use crate::cli::StatusArgs;
use crate::node::events::now_ms;

const TIMEOUT: Duration = Duration::from_secs(5);
/// A status document is tens of KiB; anything past this is not one.
const MAX_BODY: usize = 4 * 1024 * 1024;

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = match &args.url {
        Some(url) => url.clone(),
        None => own_node_url(args.config.as_deref()),
    };
    let body = rt.block_on(fetch(&url))?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let doc: StatusDoc = serde_json::from_slice(&body)
        .with_context(|| format!("{url} did not answer with a piha status document"))?;
    print!("{}", render(&doc, now_ms()));
    Ok(())
}

/// The admin URL of the node on this machine: its address and admin port
/// from the cluster file. Falls back to localhost when there is no file or
/// the hostname is not in it (the fetch then says what it could not reach).
pub fn own_node_url(config: Option<&std::path::Path>) -> String {
    let found = crate::config::find_config(config)
        .and_then(|path| crate::config::load(&path))
        .ok()
        .and_then(|cfg| {
            let host = crate::node::identity::system_hostname().ok()?;
            let plan = cfg.plan_for(&host).ok()?;
            let addr = crate::node::identity::resolve_address(&plan, &cfg, None).ok()?;
            Some(std::net::SocketAddr::new(addr, plan.admin_port))
        });
    match found {
        Some(addr) => format!("http://{addr}"),
        None => "http://127.0.0.1:9000".to_owned(),
    }
}

async fn fetch(base: &str) -> anyhow::Result<Vec<u8>> {
    let url = format!("{}/api/v1/status", base.trim_end_matches('/'));
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("not a URL: {base} (expected e.g. http://192.0.2.11:9000)"))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported: {base}");
    }
    let client = Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let response = tokio::time::timeout(TIMEOUT, client.get(uri))
        .await
        .with_context(|| format!("{url} did not answer within {} s", TIMEOUT.as_secs()))?
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let body = tokio::time::timeout(
        TIMEOUT,
        Limited::new(response.into_body(), MAX_BODY).collect(),
    )
    .await
    .with_context(|| format!("{url} stalled while sending its answer"))?
    .map_err(|e| anyhow::anyhow!("reading {url}: {e}"))?
    .to_bytes();
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(body.to_vec())
}

/// The table: one row per member, then the latest events.
pub fn render(doc: &StatusDoc, now_ms: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {}  VIP {}  seen from {} (config {})",
        doc.cluster.name,
        doc.cluster.vip.as_deref().unwrap_or("-"),
        doc.node.hostname,
        doc.cluster.config_hash
    );
    let header = [
        "HOST",
        "STATE",
        "ADDRESS",
        "ROLES",
        "CPU",
        "MEM",
        "TEMP",
        "LOAD",
        "UPTIME",
        "LAST HEARD",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for m in &doc.members {
        let sys = m.system.as_ref();
        rows.push(vec![
            if m.is_self {
                format!("{}*", m.hostname)
            } else {
                m.hostname.clone()
            },
            m.state.clone(),
            m.address.clone().unwrap_or_else(|| "-".into()),
            if m.roles.is_empty() {
                "-".into()
            } else {
                m.roles.join(",")
            },
            sys.map(|s| format!("{:.0}%", s.cpu_percent))
                .unwrap_or_else(|| "-".into()),
            sys.map(|s| format!("{:.0}%", s.memory_percent))
                .unwrap_or_else(|| "-".into()),
            sys.and_then(|s| s.temperature_c)
                .map(|t| format!("{t:.0}°C"))
                .unwrap_or_else(|| "-".into()),
            sys.map(|s| format!("{:.2}", s.load1))
                .unwrap_or_else(|| "-".into()),
            sys.map(|s| ago(s.uptime_s as i64 * 1000))
                .unwrap_or_else(|| "-".into()),
            m.last_heard_ms
                .map(|t| {
                    if m.is_self {
                        "-".into()
                    } else {
                        format!("{} ago", ago(now_ms - t))
                    }
                })
                .unwrap_or_else(|| "never".into()),
        ]);
    }
    out.push_str(&table(&rows));
    let roles: Vec<String> = [
        doc.vrrp
            .as_ref()
            .map(|v| format!("vrrp:   {}", vrrp_line(v))),
        doc.pooler
            .as_ref()
            .map(|p| format!("pooler: {}", pooler_line(p))),
        doc.db
            .as_ref()
            .and_then(db_line)
            .map(|d| format!("db:     {d}")),
        doc.storage
            .as_ref()
            .and_then(|s| s["summary"].as_str())
            .map(|s| format!("storage: {s}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !roles.is_empty() {
        let _ = writeln!(out, "\n{}", roles.join("\n"));
    }
    if !doc.events.is_empty() {
        let _ = writeln!(out, "\nrecent events:");
        for e in doc.events.iter().take(10) {
            let _ = writeln!(
                out,
                "  {:>8} ago  {:<8} {:<11} {:<7} {}",
                ago(now_ms - e.at_ms),
                e.node,
                e.component,
                e.severity,
                e.message
            );
        }
    }
    out
}

// The two lines below read the sections as JSON values, not as the
// types the node serializes: `piha status` may ask a node of another
// version, and a field it lacks must cost a "?", not the whole output.

/// "MASTER vrid 51 on eth0, priority 150 (effective 90: http failing),
/// master 192.0.2.11, VIP 192.0.2.10/24"
fn vrrp_line(v: &Value) -> String {
    let text = |key: &str| v[key].as_str().unwrap_or("?").to_owned();
    let num = |key: &str| v[key].as_u64().map_or("?".into(), |n| n.to_string());
    let mut priority = format!(
        "priority {} (effective {}",
        num("configured_priority"),
        num("effective_priority")
    );
    let failing: Vec<&str> = v["tracking"]
        .as_object()
        .map(|items| {
            items
                .iter()
                .filter(|(_, t)| t["healthy"] == false)
                .map(|(name, _)| name.as_str())
                .collect()
        })
        .unwrap_or_default();
    if !failing.is_empty() {
        let _ = write!(priority, ": {} failing", failing.join(", "));
    }
    priority.push(')');
    let master = match v["master"]["address"].as_str() {
        Some(a) => format!("master {a}"),
        None => "master unknown".into(),
    };
    let vips: Vec<&str> = v["vips"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let vips = match vips.len() {
        0 => "no VIP".to_owned(),
        1 => format!("VIP {}", vips[0]),
        _ => format!("VIPs {}", vips.join(", ")),
    };
    format!(
        "{} vrid {} on {}, {priority}, {master}, {vips}",
        text("state").to_uppercase(),
        num("vrid"),
        text("interface"),
    )
}

/// "port 5432, transaction pooling, servers pi-2 primary, pi-3 standby;
/// 23 clients (2 waiting)"
fn pooler_line(p: &Value) -> String {
    let mut line = format!(
        "port {}, {} pooling",
        p["port"].as_u64().map_or("?".into(), |n| n.to_string()),
        p["pool_mode"].as_str().unwrap_or("?")
    );
    let servers: Vec<String> = p["backends"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    format!(
                        "{} {}",
                        b["name"].as_str().unwrap_or("?"),
                        b["role"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if servers.is_empty() {
        line.push_str(", no servers");
    } else {
        let _ = write!(line, ", servers {}", servers.join(", "));
    }
    let clients = &p["clients"];
    if let Some(total) = clients["total"].as_u64() {
        let _ = write!(line, "; {total} clients");
        if let Some(waiting) = clients["waiting"].as_u64().filter(|w| *w > 0) {
            let _ = write!(line, " ({waiting} waiting)");
        }
    }
    let paused: Vec<&str> = p["paused_databases"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if p["paused"] == true {
        line.push_str("; PAUSED");
    } else if !paused.is_empty() {
        let _ = write!(line, "; paused: {}", paused.join(", "));
    }
    line
}

/// "pi-1 primary tl 2 3/60 | pi-2 standby of pi-1 lag 96 B | pi-3 fenced
/// | pi-4 down"; None without a db node.
fn db_line(d: &Value) -> Option<String> {
    let rows = d["cluster"].as_array().filter(|a| !a.is_empty())?;
    let nodes: Vec<String> = rows.iter().map(db_node).collect();
    Some(nodes.join(" | "))
}

fn db_node(r: &Value) -> String {
    let host = r["hostname"].as_str().unwrap_or("?");
    let status = r["status"].as_str().unwrap_or("?");
    let mut text = format!("{host} {status}");
    match status {
        "primary" => {
            let tl = r["timeline"].as_u64().map_or("?".into(), |n| n.to_string());
            let lsn = r["lsn"].as_str().unwrap_or("?");
            let _ = write!(text, " tl {tl} {lsn}");
        }
        "standby" | "fenced" => {
            if let Some(up) = r["upstream"].as_str() {
                let _ = write!(text, " of {up}");
            }
            if let Some(lag) = r["lag_bytes"].as_u64() {
                let _ = write!(text, " lag {}", bytes(lag));
            }
        }
        _ => {}
    }
    text
}

/// 0 B, 512 B, 1.5 KiB, 48 KiB, 3.2 GiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 10.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// "3s", "4m", "2h", "5d": the resolution a glance at a table wants.
fn ago(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(-5), "0s");
        assert_eq!(ago(59_999), "59s");
        assert_eq!(ago(61_000), "1m");
        assert_eq!(ago(7_200_000), "2h");
        assert_eq!(ago(3 * 86_400_000), "3d");
    }

    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["HOST".into(), "STATE".into()],
            vec!["pi-10".into(), "up".into()],
        ];
        assert_eq!(table(&rows), "HOST   STATE\npi-10  up\n");
    }

    /// The page's sample, without its events: they include severities
    /// only the page has to cope with (it is the page's torture test).
    fn sample() -> StatusDoc {
        let mut doc: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/status/sample-status.json"
        ))
        .expect("the sample is JSON");
        doc["events"] = Value::Array(Vec::new());
        serde_json::from_value(doc).expect("the sample is a status document")
    }

    #[test]
    fn the_vrrp_instance_the_pooler_and_the_db_nodes_get_a_line_each() {
        let doc = sample();
        let text = render(&doc, doc.generated_at_ms);
        let want = "\n\
            vrrp:   MASTER vrid 51 on eth0, priority 150 (effective 110: storage failing), \
            master 192.0.2.11, VIP 192.0.2.10/24\n\
            pooler: port 5432, transaction pooling, servers pi-2 primary, pi-3 standby, \
            pi-4 down; 23 clients (2 waiting)\n\
            db:     pi-1 standby of pi-2 lag 12 KiB | pi-2 primary tl 3 16/B374D848 | \
            pi-3 standby of pi-2 lag 20 KiB | pi-4 down\n\
            storage: volume piha DEGRADED: brick 192.0.2.14:/srv/piha/brick unknown; \
            set 2 has 1 of 2 bricks online and keeps quorum, 44 entries to heal, mounted on /srv/piha/www\n";
        assert!(text.contains(want), "{text}");
    }

    #[test]
    fn a_node_without_them_or_of_an_older_version_prints_none() {
        let mut doc = serde_json::to_value(sample()).expect("json");
        let fields = doc.as_object_mut().expect("object");
        fields.remove("vrrp");
        fields.remove("pooler");
        fields.remove("db");
        fields.remove("storage");
        let doc: StatusDoc = serde_json::from_value(doc).expect("fields missing are null");
        let text = render(&doc, doc.generated_at_ms);
        assert!(
            !text.contains("vrrp:")
                && !text.contains("pooler:")
                && !text.contains("db:")
                && !text.contains("storage:"),
            "{text}"
        );

        // Fields a node does not send cost a "?" rather than the line.
        let mut doc = sample();
        doc.vrrp = Some(serde_json::json!({"state": "backup", "vrid": 7}));
        doc.pooler = Some(serde_json::json!({"paused": true}));
        let text = render(&doc, doc.generated_at_ms);
        assert!(
            text.contains(
                "vrrp:   BACKUP vrid 7 on ?, priority ? (effective ?), master unknown, no VIP\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("pooler: port ?, ? pooling, no servers; PAUSED\n"),
            "{text}"
        );

        // A db section without rows prints nothing; rows missing fields
        // print what they have.
        doc.db = Some(serde_json::json!({"cluster": []}));
        assert!(!render(&doc, doc.generated_at_ms).contains("db:"));
        doc.db = Some(serde_json::json!({"cluster": [
            {"hostname": "pi-1", "status": "primary"},
            {"hostname": "pi-2", "status": "standby", "lag_bytes": 5_000_000_000u64},
            {"hostname": "pi-3", "status": "fenced", "upstream": "pi-1", "lag_bytes": 1536},
            {"status": "cloning"},
        ]}));
        let text = render(&doc, doc.generated_at_ms);
        assert!(
            text.contains(
                "db:     pi-1 primary tl ? ? | pi-2 standby lag 4.7 GiB | \
                 pi-3 fenced of pi-1 lag 1.5 KiB | ? cloning\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(12_288), "12 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
    }
}
