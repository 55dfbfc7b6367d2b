//! The `balancer` role section over the settings below it: VRRP priority,
//! front ends, algorithm, health check, limits, static backends and the tcp
//! services. Tables (`health`, `limits`) overlay key by key; lists
//! (`backends`, `tcp`) and `tls` replace the ones below as a whole.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::diagnostic::{Report, Span};
use super::model::*;
use super::overlay::{
    count, duration, field, port, port_or_off, required, timeout_within_interval, tls_files,
};
use super::raw::{RawBackend, RawBalancer, RawHealth, RawLimits, RawTcp, Section};
use super::values;

/// L4 connections are long-lived (a database session, a Redis client), and
/// round robin spreads long-lived connections unevenly.
const TCP_ALGORITHM: Algorithm = Algorithm::LeastConn;

/// A Pi runs out of memory and file descriptors long before this.
const MAX_CONN: u32 = 1_000_000;
const MAX_QUEUE: u32 = 100_000;
const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=256;
const RISE_FALL: std::ops::RangeInclusive<u32> = 1..=100;

pub fn balancer(
    base: &BalancerSettings,
    section: Option<&Section<RawBalancer>>,
    report: &mut Report<'_>,
) -> BalancerSettings {
    let Some(section) = section else {
        return base.clone();
    };
    let f = &section.fields;
    let priority = |n: &i64| values::priority(*n);
    let algorithm = |t: &String| values::algorithm(t);
    let slow_start = |t: &String| values::duration_or_zero(t);
    BalancerSettings {
        priority: field(&f.priority, &base.priority, priority, report),
        http_port: port(&f.http_port, base.http_port, report),
        https_port: port_or_off(&f.https_port, base.https_port, report),
        tls: tls_files(f.tls.as_ref(), &base.tls, report),
        algorithm: field(&f.algorithm, &base.algorithm, algorithm, report),
        slow_start: field(&f.slow_start, &base.slow_start, slow_start, report),
        health: http_health(&base.health, f.health.as_ref(), report),
        limits: limits(&base.limits, f.limits.as_ref(), report),
        backends: match &f.backends {
            Some(list) => backends(list, report),
            None => base.backends.clone(),
        },
        tcp: match &f.tcp {
            Some(list) => tcp_services(list, report),
            None => base.tcp.clone(),
        },
    }
}

fn http_health(
    base: &HttpHealthCheck,
    raw: Option<&RawHealth>,
    report: &mut Report<'_>,
) -> HttpHealthCheck {
    let Some(raw) = raw else {
        return base.clone();
    };
    let below = Timing {
        interval: base.interval,
        timeout: base.timeout,
        rise: base.rise,
        fall: base.fall,
    };
    let t = timing(below, raw, report);
    let path = |p: &String| values::health_path(p);
    HttpHealthCheck {
        path: field(&raw.path, &base.path, path, report),
        expect_status: field(
            &raw.expect,
            &base.expect_status,
            |n| values::status_code(*n),
            report,
        ),
        interval: t.interval,
        timeout: t.timeout,
        rise: t.rise,
        fall: t.fall,
        panic: raw.panic.as_ref().map_or(base.panic, |p| *p.get_ref()),
    }
}

fn tcp_health(raw: Option<&RawHealth>, report: &mut Report<'_>) -> TcpHealthCheck {
    let base = TcpHealthCheck::default();
    let Some(raw) = raw else {
        return base;
    };
    let below = Timing {
        interval: base.interval,
        timeout: base.timeout,
        rise: base.rise,
        fall: base.fall,
    };
    let t = timing(below, raw, report);
    TcpHealthCheck {
        interval: t.interval,
        timeout: t.timeout,
        rise: t.rise,
        fall: t.fall,
    }
}

/// What HTTP and TCP health checks share.
struct Timing {
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
}

fn timing(base: Timing, raw: &RawHealth, report: &mut Report<'_>) -> Timing {
    let t = Timing {
        interval: duration(&raw.interval, base.interval, report),
        timeout: duration(&raw.timeout, base.timeout, report),
        rise: count(&raw.rise, base.rise, ("rise", RISE_FALL), report),
        fall: count(&raw.fall, base.fall, ("fall", RISE_FALL), report),
    };
    let durations = (&raw.interval, &raw.timeout);
    timeout_within_interval("health check", (t.interval, t.timeout), durations, report);
    t
}

fn limits(base: &ProxyLimits, raw: Option<&RawLimits>, report: &mut Report<'_>) -> ProxyLimits {
    let Some(raw) = raw else {
        return base.clone();
    };
    let header_size = |s: &_| values::size_in(s, 1 << 10, Some(1 << 20), "max_header_size");
    ProxyLimits {
        maxconn: count(
            &raw.maxconn,
            base.maxconn,
            ("maxconn", 1..=MAX_CONN),
            report,
        ),
        queue: count(&raw.queue, base.queue, ("queue", 0..=MAX_QUEUE), report),
        queue_timeout: duration(&raw.queue_timeout, base.queue_timeout, report),
        header_timeout: duration(&raw.header_timeout, base.header_timeout, report),
        connect_timeout: duration(&raw.connect_timeout, base.connect_timeout, report),
        server_timeout: duration(&raw.server_timeout, base.server_timeout, report),
        tcp_user_timeout: field(
            &raw.tcp_user_timeout,
            &base.tcp_user_timeout,
            |t| values::tcp_user_timeout(t, "tcp_user_timeout"),
            report,
        ),
        idle_timeout: duration(&raw.idle_timeout, base.idle_timeout, report),
        max_header_bytes: field(
            &raw.max_header_size,
            &base.max_header_bytes,
            header_size,
            report,
        ),
        max_body_bytes: field(
            &raw.max_body_size,
            &base.max_body_bytes,
            values::body_limit,
            report,
        ),
    }
}

/// Static backends, each address once: a second entry would double its
/// share silently, which is what `weight` is for.
fn backends(list: &Spanned<Vec<RawBackend>>, report: &mut Report<'_>) -> Vec<StaticBackend> {
    let mut first: HashMap<SocketAddr, Span> = HashMap::new();
    let mut out = Vec::new();
    for raw in list.get_ref() {
        let Some((backend, span)) = backend(raw, report) else {
            continue;
        };
        if let Some(earlier) = first.get(&backend.address) {
            let line = report.line_of(earlier.start);
            report
                .error(span, format!("backend {} is listed twice", backend.address))
                .note(format!("first listed at line {line}"))
                .help("list each backend once; a higher `weight` sends it more requests");
            continue;
        }
        first.insert(backend.address, span);
        out.push(backend);
    }
    out
}

fn backend(raw: &RawBackend, report: &mut Report<'_>) -> Option<(StaticBackend, Span)> {
    let f = &raw.fields;
    let weight = count(&f.weight, 1, ("weight", WEIGHTS), report);
    let address = required(raw, &f.address, "address", "a backend", report)?;
    match values::backend_address(address.get_ref()) {
        Ok(a) => Some((StaticBackend { address: a, weight }, address.span())),
        Err(why) => {
            report.error(address.span(), why);
            None
        }
    }
}

/// L4 services, each name once (stats and metrics tell them apart by it).
fn tcp_services(list: &Spanned<Vec<RawTcp>>, report: &mut Report<'_>) -> Vec<TcpService> {
    let mut first: HashMap<String, Span> = HashMap::new();
    let mut out = Vec::new();
    for raw in list.get_ref() {
        let Some((service, span)) = tcp_service(raw, report) else {
            continue;
        };
        if let Some(earlier) = first.get(&service.name) {
            let line = report.line_of(earlier.start);
            report
                .error(
                    span,
                    format!("there are two tcp services named \"{}\"", service.name),
                )
                .note(format!("the first is at line {line}"))
                .help("give each tcp service of a node its own name");
            continue;
        }
        first.insert(service.name.clone(), span);
        out.push(service);
    }
    out
}

/// One service, with where its name is written; `None` if it has no valid
/// name or port (the rest is still checked and reported).
fn tcp_service(raw: &RawTcp, report: &mut Report<'_>) -> Option<(TcpService, Span)> {
    let f = &raw.fields;
    let name = required(raw, &f.name, "name", "a tcp service", report).and_then(|n| {
        values::service_name(n.get_ref())
            .map_err(|why| {
                report.error(n.span(), why);
            })
            .ok()
            .map(|()| n)
    });
    let who = name.map_or("this tcp service".to_string(), |n| {
        format!("tcp service \"{}\"", n.get_ref())
    });
    let port = required(raw, &f.port, "port", &who, report).and_then(|p| {
        values::port(*p.get_ref())
            .map_err(|why| {
                report.error(p.span(), why);
            })
            .ok()
    });
    // Everything is checked before a bad name or port drops the service.
    let backends = tcp_backends(raw, &who, report);
    let algorithm = |t: &String| values::algorithm(t);
    let algorithm = field(&f.algorithm, &TCP_ALGORITHM, algorithm, report);
    let health = tcp_health(f.health.as_ref(), report);
    let limits = limits(&ProxyLimits::default(), f.limits.as_ref(), report);
    let (name, port) = (name?, port?);
    let service = TcpService {
        name: name.get_ref().clone(),
        port,
        backends,
        algorithm,
        health,
        limits,
    };
    Some((service, name.span()))
}

/// A tcp service has no web nodes to fall back on: it needs a backend.
fn tcp_backends(raw: &RawTcp, who: &str, report: &mut Report<'_>) -> Vec<StaticBackend> {
    let help = "list where it forwards to, like backends = [{ address = \"192.0.2.60:6379\" }]";
    let Some(list) = required(raw, &raw.fields.backends, "backends", who, report) else {
        return Vec::new();
    };
    if list.get_ref().is_empty() {
        report
            .error(
                list.span(),
                format!("{who} has no backends; it needs at least one"),
            )
            .help(help);
    }
    backends(list, report)
}
