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
use super::server::{Limits, serve};
use super::tls;
use super::{WebApp, router};
use crate::config::{Role, WebSettings};
use crate::node::context::NodeContext;
use crate::node::health::{RoleHealth, RoleState};

const COMPONENT: &str = "web";
/// How often the document root is looked at for the role's health.
const ROOT_CHECK_EVERY: Duration = Duration::from_secs(5);

pub async fn run(ctx: Arc<NodeContext>) -> anyhow::Result<()> {
    let settings = web_settings(&ctx);
    set_health(&ctx, RoleState::Starting, "binding".into());
    let app = router(&settings, &ctx.identity.hostname);
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

    let restart = watch(&ctx, &settings, &app, &listening, tls_problem.as_deref()).await;
    stop.cancel();
    while servers.join_next().await.is_some() {}
    if restart {
        ctx.events
            .info(COMPONENT, "settings changed, restarting", json!({}));
    }
    Ok(())
}

/// Runs until the node stops (false) or the web settings change (true),
/// updating the role's health as the document root comes and goes.
async fn watch(
    ctx: &NodeContext,
    settings: &WebSettings,
    app: &WebApp,
    listening: &[String],
    tls_problem: Option<&str>,
) -> bool {
    let mut config = ctx.config.clone();
    config.borrow_and_update();
    let fingerprint = serde_json::to_value(settings).ok();
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
                let now = running.plan.settings.web.clone().unwrap_or_default();
                if !running.plan.roles.contains(&Role::Web)
                    || serde_json::to_value(&now).ok() != fingerprint
                {
                    return true;
                }
            }
            _ = tick.tick() => {
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
                let next = health_of(listening, problem.as_deref(), tls_problem, dropped);
                if shown.as_ref() != Some(&next) {
                    set_health(ctx, next.0, next.1.clone());
                    shown = Some(next);
                }
            }
        }
    }
}

fn health_of(
    listening: &[String],
    root_problem: Option<&str>,
    tls_problem: Option<&str>,
    dropped_log_lines: u64,
) -> (RoleState, String) {
    let mut problems: Vec<String> = Vec::new();
    if let Some(p) = root_problem {
        problems.push(format!("{p}; serving /health and /api only"));
    }
    if let Some(p) = tls_problem {
        problems.push(p.to_owned());
    }
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

fn web_settings(ctx: &NodeContext) -> WebSettings {
    ctx.running().plan.settings.web.clone().unwrap_or_default()
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
        let (state, detail) = health_of(&on, None, None, 0);
        assert_eq!(state, RoleState::Healthy);
        assert_eq!(detail, "serving on http://192.0.2.1:8080");
        let (state, detail) = health_of(&on, Some("document root /srv/x does not exist"), None, 0);
        assert_eq!(state, RoleState::Degraded);
        assert!(
            detail
                .starts_with("document root /srv/x does not exist; serving /health and /api only")
        );
        let (state, detail) = health_of(&on, None, Some("no https"), 0);
        assert_eq!(state, RoleState::Degraded);
        assert!(detail.contains("no https"));
        assert!(
            health_of(&on, None, None, 3)
                .1
                .contains("3 access log lines dropped")
        );
    }
}
