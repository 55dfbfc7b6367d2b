//! The TLS acceptor of a node's front end (the web role's HTTPS, the
//! balancer's HTTPS): the configured certificate, or the node's self-signed
//! one (made on first start, remade if unreadable), reloading without a
//! restart, each reload an event of `component`.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;
use tokio_rustls::TlsAcceptor;

use super::{ReloadEvent, ReloadingCert, ensure_self_signed, generate_self_signed, server_config};
use crate::config::TlsFiles;
use crate::node::context::NodeContext;

pub fn node_acceptor(
    ctx: &NodeContext,
    files: Option<&TlsFiles>,
    component: &'static str,
) -> anyhow::Result<TlsAcceptor> {
    let resolver = match files {
        Some(files) => ReloadingCert::load(files.clone())
            .with_context(|| format!("certificate {}", files.cert.display()))?,
        None => self_signed(ctx, component)?,
    };
    let events = ctx.events.clone();
    let resolver = resolver.on_reload(move |event| match event {
        ReloadEvent::Loaded { cert } => events.info(
            component,
            format!("certificate {} reloaded", cert.display()),
            json!({"cert": cert}),
        ),
        ReloadEvent::Failed { cert, error } => events.warning(
            component,
            format!(
                "new certificate {} not used, keeping the old one: {error}",
                cert.display()
            ),
            json!({"cert": cert, "error": error}),
        ),
    });
    Ok(TlsAcceptor::from(server_config(Arc::new(resolver))?))
}

fn self_signed(ctx: &NodeContext, component: &'static str) -> anyhow::Result<ReloadingCert> {
    let id = &ctx.identity;
    let files = ensure_self_signed(&id.data_dir, &id.hostname, id.address)?;
    match ReloadingCert::load(files.clone()) {
        Ok(r) => Ok(r),
        Err(e) => {
            // Ours to remake: a power cut may have left an empty file.
            ctx.events.warning(
                component,
                format!("self-signed certificate unusable ({e}), making a new one"),
                json!({"cert": files.cert}),
            );
            let files = generate_self_signed(&id.data_dir, &id.hostname, id.address)?;
            Ok(ReloadingCert::load(files)?)
        }
    }
}
