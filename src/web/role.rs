//! The web role as a supervised service of the node agent: binds the ports,
//! serves until the node stops, keeps the role's health current, and
//! returns early (to be restarted at once) when a reload changed its
//! settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::files::resolve::root_problem;
use super::notes::{self, Notes};
use super::server::{Limits, serve};
use super::tls;
use super::{WebApp, router_with};
use crate::config::{Role, WebSettings};
use crate::node::context::{NodeContext, Running};
use crate::node::health::{RoleHealth, RoleState};

const COMPONENT: &str = "web";
/// How often the document root is looked at for the role's health.
const ROOT_CHECK_EVERY: Duration = Duration::from_secs(5);

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let running = ctx.running();
    let settings = running.plan.settings.web.clone().unwrap_or_default();
    let started_with = fingerprint(&running);
    set_health(&ctx, RoleState::Starting, "binding".into());
    let (notes, notes_problem) = notes_app(&ctx, &running, &settings).await;
    let app = router_with(&settings, &ctx.identity.hostname, notes);
    let limits = Limits::default();
    let stop = ctx.shutdown.child_token();

    let plain_addr = SocketAddr::new(ctx.identity.address, settings.port);
    let plain = match TcpListener::bind(plain_addr).await {
        Ok(l) => l,
        Err(e) => {
            let why = format!("cannot listen on tcp {plain_addr}: {e}");
            set_health(&ctx, RoleState::Failed, why.clone());
            return Err(anyhow::anyhow!(why));
        }
    };
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(serve(
        plain,
        None,
        app.clone(),
        limits.clone(),
        stop.clone(),
    ));
    let mut listening = vec![format!("http://{plain_addr}")];

    // HTTPS trouble leaves plain HTTP serving: the role is degraded, not
    // down, and a reload with fixed settings restarts it.
    let mut tls_problem = None;
    if let Some(port) = settings.tls_port {
        let addr = SocketAddr::new(ctx.identity.address, port);
        match https_listener(&ctx, &settings, addr).await {
            Ok((listener, acceptor)) => {
                servers.spawn(serve(
                    listener,
                    Some(acceptor),
                    app.clone(),
                    limits,
                    stop.clone(),
                ));
                listening.push(format!("https://{addr}"));
            }
            Err(e) => {
                let why = format!("no https on {addr}: {e:#}");
                ctx.events
                    .error(COMPONENT, why.clone(), json!({"port": port}));
                tls_problem = Some(why);
            }
        }
    }
    ctx.events.info(
        COMPONENT,
        format!(
            "serving {} on {}",
            settings.root.display(),
            listening.join(", ")
        ),
        json!({"root": settings.root, "listening": listening}),
    );

    let problems = Problems {
        tls: tls_problem,
        notes: notes_problem,
    };
    let restart = watch(&ctx, &settings, started_with, &app, &listening, &problems).await;
    stop.cancel();
    while servers.join_next().await.is_some() {}
    if restart {
        ctx.events
            .info(COMPONENT, "settings changed, restarting", json!({}));
    }
    Ok(())
}

/// What the role started without, for its health until a restart.
struct Problems {
    tls: Option<String>,
    notes: Option<String>,
}

/// The notes app as the settings ask for it (none when they do not), and
/// what keeps it from running, if anything. A missing password or address
/// leaves the app answering 503 with the reason, and the role degraded.
async fn notes_app(
    ctx: &NodeContext,
    running: &Running,
    settings: &WebSettings,
) -> (Option<Notes>, Option<String>) {
    let Some(wanted) = &settings.notes else {
        return (None, None);
    };
    let hostname = &ctx.identity.hostname;
    let ready = match notes::target(wanted, &running.config) {
        Ok(target) => notes::read_password(&wanted.password_file)
            .await
            .map(|password| (target, password)),
        Err(why) => Err(why),
    };
    match ready {
        Ok((target, password)) => {
            ctx.events.info(
                COMPONENT,
                format!(
                    "notes app on /api/notes: database {} as {} via {target}",
                    wanted.database, wanted.user
                ),
                json!({"database": wanted.database, "user": wanted.user, "address": target}),
            );
            (Some(Notes::new(hostname, target, wanted, &password)), None)
        }
        Err(why) => {
            let problem = format!("notes app off: {why}");
            ctx.events.error(COMPONENT, problem.clone(), json!({}));
            (Some(Notes::off(hostname, why)), Some(problem))
        }
    }
}

/// What, when it changes, restarts the role: its settings, and where the
/// notes app connects (the VIP or the pooler's port may change without a
/// change to `web`).
fn fingerprint(running: &Running) -> Option<serde_json::Value> {
    let web = running.plan.settings.web.clone().unwrap_or_default();
    let notes_target = web
        .notes
        .as_ref()
        .map(|n| notes::target(n, &running.config).ok());
    serde_json::to_value((web, notes_target)).ok()
}

/// Runs until the node stops (false) or the web settings change (true),
/// updating the role's health as the document root comes and goes.
async fn watch(
    ctx: &NodeContext,
    settings: &WebSettings,
    started_with: Option<serde_json::Value>,
    app: &WebApp,
    listening: &[String],
    problems: &Problems,
) -> bool {
    let mut config = ctx.config.clone();
    // A reload while the role was starting is looked at here, not lost.
    let current = config.borrow_and_update().clone();
    if !current.plan.roles.contains(&Role::Web) || fingerprint(&current) != started_with {
        return true;
    }
    let mut tick = tokio::time::interval(ROOT_CHECK_EVERY);
    let mut shown: Option<(RoleState, String)> = None;
    let mut root_was_ok = true;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return false,
            changed = config.changed() => {
                if changed.is_err() {
                    return false; // the agent is gone
                }
                let running = config.borrow_and_update().clone();
                if !running.plan.roles.contains(&Role::Web)
                    || fingerprint(&running) != started_with
                {
                    return true;
                }
            }
            _ = tick.tick() => {
                if problems.notes.is_some() && notes_could_start(ctx, settings).await {
                    ctx.events.info(COMPONENT, "the notes app can start now, restarting", json!({}));
                    return true;
                }
                let root = settings.root.clone();
                let problem = tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio::task::spawn_blocking(move || root_problem(&root)),
                )
                .await
                .map(|r| r.unwrap_or_else(|_| Some("root check failed".into())))
                .unwrap_or_else(|_| Some(format!("document root {} is not answering", settings.root.display())));
                if problem.is_some() == root_was_ok {
                    root_was_ok = problem.is_none();
                    match &problem {
                        Some(why) => ctx.events.warning(COMPONENT, format!("{why}: files answer 503"), json!({})),
                        None if shown.is_some() => ctx.events.info(COMPONENT, "document root is back", json!({})),
                        None => {}
                    }
                }
                let dropped = app.access_log().map_or(0, |l| l.dropped());
                let next = health_of(listening, problem.as_deref(), problems, dropped);
                if shown.as_ref() != Some(&next) {
                    set_health(ctx, next.0, next.1.clone());
                    shown = Some(next);
                }
            }
        }
    }
}

/// Whether what kept the notes app off (its password file, most likely)
/// is fixed, so that a restart would start it.
async fn notes_could_start(ctx: &NodeContext, settings: &WebSettings) -> bool {
    let Some(wanted) = &settings.notes else {
        return false;
    };
    let running = ctx.running();
    notes::target(wanted, &running.config).is_ok()
        && notes::read_password(&wanted.password_file).await.is_ok()
}

fn health_of(
    listening: &[String],
    root_problem: Option<&str>,
    started: &Problems,
    dropped_log_lines: u64,
) -> (RoleState, String) {
    let mut problems: Vec<String> = Vec::new();
    if let Some(p) = root_problem {
        problems.push(format!("{p}; serving /health and /api only"));
    }
    problems.extend(started.tls.iter().cloned());
    problems.extend(started.notes.iter().cloned());
    let serving = format!("serving on {}", listening.join(", "));
    if problems.is_empty() {
        let mut detail = serving;
        if dropped_log_lines > 0 {
            detail.push_str(&format!(" ({dropped_log_lines} access log lines dropped)"));
        }
        (RoleState::Healthy, detail)
    } else {
        (
            RoleState::Degraded,
            format!("{}; {serving}", problems.join("; ")),
        )
    }
}

fn set_health(ctx: &NodeContext, state: RoleState, detail: String) {
    ctx.health.set_role(RoleHealth {
        role: Role::Web,
        state,
        detail,
    });
}

/// The HTTPS listener and its acceptor (configured or self-signed
/// certificate, reloading).
async fn https_listener(
    ctx: &Arc<NodeContext>,
    settings: &WebSettings,
    addr: SocketAddr,
) -> anyhow::Result<(TcpListener, TlsAcceptor)> {
    let acceptor = tls::node_acceptor(ctx, settings.tls.as_ref(), COMPONENT)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on tcp {addr}"))?;
    Ok((listener, acceptor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_says_what_is_wrong() {
        let on = ["http://192.0.2.1:8080".to_owned()];
        let none = Problems {
            tls: None,
            notes: None,
        };
        let (state, detail) = health_of(&on, None, &none, 0);
        assert_eq!(state, RoleState::Healthy);
        assert_eq!(detail, "serving on http://192.0.2.1:8080");
        let (state, detail) = health_of(&on, Some("document root /srv/x does not exist"), &none, 0);
        assert_eq!(state, RoleState::Degraded);
        assert!(
            detail
                .starts_with("document root /srv/x does not exist; serving /health and /api only")
        );
        let tls = Problems {
            tls: Some("no https".into()),
            notes: None,
        };
        let (state, detail) = health_of(&on, None, &tls, 0);
        assert_eq!(state, RoleState::Degraded);
        assert!(detail.contains("no https"));
        let notes = Problems {
            tls: None,
            notes: Some("notes app off: cannot read password_file /x".into()),
        };
        let (state, detail) = health_of(&on, None, &notes, 0);
        assert_eq!(state, RoleState::Degraded);
        assert!(detail.starts_with("notes app off: cannot read password_file /x; serving on"));
        assert!(
            health_of(&on, None, &none, 3)
                .1
                .contains("3 access log lines dropped")
        );
    }
}
