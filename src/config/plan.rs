//! "I am `pi-3`, what do I run?", and the table `piha check` prints.

use std::fmt::Write;

use super::ConfigError;
use super::model::*;

impl ClusterConfig {
    /// The plan of `hostname`: its own `[[node]]` entry, else the first
    /// `[[pattern]]` (in file order) whose glob matches it.
    ///
    /// The name is lowercased and any domain is dropped first, since
    /// hostnames compare case-insensitively and `hostname` on some images
    /// reports `pi-1.lan`; the file only holds bare lowercase labels.
    pub fn plan_for(&self, hostname: &str) -> Result<NodePlan, ConfigError> {
        let host = normalize(hostname);
        if let Some(node) = self.nodes.iter().find(|n| n.hostname == host) {
            return Ok(NodePlan {
                hostname: node.hostname.clone(),
                address: Some(node.address),
                admin_port: node.admin_port,
                gossip_port: node.gossip_port,
                roles: node.roles.clone(),
                settings: node.settings.clone(),
                from_pattern: None,
            });
        }
        if let Some(rule) = self.patterns.iter().find(|p| p.matches(&host)) {
            return Ok(NodePlan {
                hostname: host,
                address: None,
                admin_port: self.defaults.admin_port,
                gossip_port: self.defaults.gossip_port,
                roles: rule.roles.clone(),
                settings: rule.settings.clone(),
                from_pattern: Some(rule.pattern.clone()),
            });
        }
        Err(ConfigError::UnknownHost {
            host: hostname.to_string(),
            path: self.source.path.clone(),
            known: self.nodes.iter().map(|n| n.hostname.clone()).collect(),
            patterns: self.patterns.iter().map(|p| p.pattern.clone()).collect(),
        })
    }

    /// The role plan of every node and pattern, for `piha check`.
    pub fn plan_table(&self) -> String {
        let mut out = String::new();
        let vip = self
            .vip
            .map_or("no VIP".to_string(), |v| format!("VIP {v}"));
        let _ = writeln!(
            out,
            "cluster \"{}\": {}, {}, {vip}, config {} (hash {})",
            self.name,
            count(self.nodes.len(), "node"),
            count(self.patterns.len(), "pattern"),
            self.source.path.display(),
            self.source.hash
        );
        let mut rows = vec![[
            "HOST".to_string(),
            "ADDRESS".to_string(),
            "ADMIN".to_string(),
            "ROLES".to_string(),
            "SETTINGS".to_string(),
        ]];
        for node in &self.nodes {
            rows.push([
                node.hostname.clone(),
                node.network.to_string(),
                node.admin_port.to_string(),
                roles(&node.roles),
                settings(&node.settings),
            ]);
        }
        for rule in &self.patterns {
            rows.push([
                rule.pattern.clone(),
                "(joins by pattern)".to_string(),
                self.defaults.admin_port.to_string(),
                roles(&rule.roles),
                settings(&rule.settings),
            ]);
        }
        out.push('\n');
        out.push_str(&align(&rows));
        let token = if self.admin_token.is_some() {
            "admin token: set"
        } else {
            "admin token: not set (admin endpoints that change something are refused)"
        };
        let _ = writeln!(
            out,
            "\n{}\n{}\n{}\n{}\n{token}",
            self.vrrp_line(),
            self.pooler_line(),
            self.db_line(),
            self.storage_line()
        );
        out
    }

    /// One line on the VRRP instance the balancer nodes run, or why none.
    fn vrrp_line(&self) -> String {
        let has_balancer =
            |roles: &std::collections::BTreeSet<Role>| roles.contains(&Role::Balancer);
        let any = self.nodes.iter().any(|n| has_balancer(&n.roles))
            || self.patterns.iter().any(|p| has_balancer(&p.roles));
        if !any || self.vip.is_none() {
            return "vrrp: none (no balancer node, or no VIP)".to_string();
        }
        let v = &self.vrrp;
        let version = match v.version {
            VrrpVersion::V2 => "v2",
            VrrpVersion::V3 => "v3",
        };
        let mode = match &v.mode {
            VrrpMode::Multicast => "multicast".to_string(),
            VrrpMode::Unicast { peers } => format!("unicast to {} peers", peers.len()),
        };
        let preempt = match (v.preempt, v.preempt_delay.is_zero()) {
            (false, _) => "no preempt".to_string(),
            (true, true) => "preempt".to_string(),
            (true, false) => format!(
                "preempt after {}",
                humantime::format_duration(v.preempt_delay)
            ),
        };
        format!(
            "vrrp: {version} vrid {}, adverts every {}, {mode}, {preempt}{}",
            v.vrid,
            humantime::format_duration(v.interval),
            if v.auth.is_some() {
                ", password auth"
            } else {
                ""
            }
        )
    }

    /// One line on the Postgres pooler, or why there is none.
    fn pooler_line(&self) -> String {
        let has_balancer =
            |roles: &std::collections::BTreeSet<Role>| roles.contains(&Role::Balancer);
        if !self.nodes.iter().any(|n| has_balancer(&n.roles))
            && !self.patterns.iter().any(|p| has_balancer(&p.roles))
        {
            return "postgres pooler: none (no node has the balancer role)".to_string();
        }
        let pg = &self.postgres;
        let auth_query = if pg.auth_query.is_some() { "on" } else { "off" };
        let mut line = format!(
            "postgres pooler: port {} (PostgreSQL {}), {} mode, pool {}, {}, auth_query {auth_query}",
            pg.port,
            pg.server_port,
            pg.pool_mode.name(),
            pg.pool_size,
            count(pg.users.len(), "user"),
        );
        if pg.users.is_empty() && pg.auth_query.is_none() {
            line.push_str(" (nobody can log in through it)");
        }
        line
    }
}

impl ClusterConfig {
    /// One line on the Gluster volume the storage nodes form, or why none.
    fn storage_line(&self) -> String {
        use crate::gluster::form::Layout;
        let Ok(layout) = Layout::from_config(self) else {
            return "storage: none (no [[node]] has the storage role)".to_string();
        };
        let arbiters: Vec<&str> = layout
            .bricks
            .iter()
            .filter(|b| b.arbiter)
            .map(|b| b.node.as_str())
            .collect();
        let arbiters = if arbiters.is_empty() {
            String::new()
        } else {
            format!(" (arbiters on {})", arbiters.join(", "))
        };
        format!(
            "storage: volume {} ({}) on {}{arbiters}, formed by {}, mounted on {}",
            layout.volume,
            layout.shape(),
            layout.nodes().join(", "),
            layout.former().unwrap_or("-"),
            self.storage.mount.display()
        )
    }

    /// One line on how the db nodes run PostgreSQL (`[db]`), or why none do.
    fn db_line(&self) -> String {
        let has_db = |roles: &std::collections::BTreeSet<Role>| roles.contains(&Role::Db);
        if !self.nodes.iter().any(|n| has_db(&n.roles))
            && !self.patterns.iter().any(|p| has_db(&p.roles))
        {
            return "db: none (no node has the db role)".to_string();
        }
        let db = &self.db;
        let mut line = format!("db: PostgreSQL from {}", db.bindir.display());
        if let Some(dir) = &db.data_dir {
            let _ = write!(line, ", data in {}", dir.display());
        }
        line.push_str(if db.synchronous {
            ", synchronous replication"
        } else {
            ", asynchronous replication"
        });
        line.push_str(if db.failover {
            ", automatic failover"
        } else {
            ", no automatic failover (only `piha switchover` changes the primary)"
        });
        match &db.backup {
            None => line.push_str(", no scheduled backups"),
            Some(b) => {
                let _ = write!(
                    line,
                    ", backups every {} to {} (keep {})",
                    every(b.every),
                    b.dir.display(),
                    b.keep
                );
            }
        }
        line
    }
}

/// "24h" rather than humantime's "1day", since that is how the shipped
/// file writes it; anything not in whole hours as humantime says it.
fn every(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 && d.as_secs() % 3600 == 0 {
        format!("{}h", d.as_secs() / 3600)
    } else {
        humantime::format_duration(d).to_string()
    }
}

impl PatternRule {
    /// Whether `host` (already normalized) joins by this rule.
    pub fn matches(&self, host: &str) -> bool {
        // Validated at load, so a pattern that fails to compile here cannot
        // happen; treat it as matching nothing rather than panicking.
        glob::Pattern::new(&self.pattern).is_ok_and(|p| p.matches(host))
    }
}

fn normalize(hostname: &str) -> String {
    let host = hostname.trim().to_ascii_lowercase();
    match host.split_once('.') {
        Some((label, _)) => label.to_string(),
        None => host,
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn roles(roles: &std::collections::BTreeSet<Role>) -> String {
    if roles.is_empty() {
        return "(none)".to_string();
    }
    roles
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn settings(s: &RoleSettings) -> String {
    let mut parts = Vec::new();
    if let Some(b) = &s.balancer {
        parts.push(format!("vrrp priority {}", b.priority));
        parts.push(format!(
            "http {} {}",
            ports(b.http_port, b.https_port),
            b.algorithm.name()
        ));
        if !b.backends.is_empty() {
            parts.push(count(b.backends.len(), "static backend"));
        }
        parts.extend(b.tcp.iter().map(|t| format!("tcp {} :{}", t.name, t.port)));
    }
    if let Some(w) = &s.web {
        parts.push(format!(
            "web {} root {}",
            ports(w.port, w.tls_port),
            w.root.display()
        ));
        if let Some(n) = &w.notes {
            let via = n
                .address
                .map_or_else(|| "the pooler".to_owned(), |a| a.to_string());
            parts.push(format!("notes app as {}@{} via {via}", n.user, n.database));
        }
    }
    if let Some(d) = &s.db {
        parts.push(if d.initial_primary {
            "db initial primary".to_string()
        } else {
            "db standby".to_string()
        });
    }
    if let Some(st) = &s.storage {
        parts.push(format!("brick {}", st.brick.display()));
    }
    if parts.is_empty() {
        return "-".to_string();
    }
    parts.join(", ")
}

/// ":80/:443", or ":80" with HTTPS off.
fn ports(plain: u16, tls: Option<u16>) -> String {
    match tls {
        Some(tls) => format!(":{plain}/:{tls}"),
        None => format!(":{plain}"),
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn align<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
