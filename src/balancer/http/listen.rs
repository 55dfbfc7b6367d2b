//! The client connection cap. (The sockets themselves come from
//! `balancer::listen`: the VIP is bound with IP_FREEBIND, so both balancer
//! nodes listen on it from the start and only the VRRP master, which holds
//! the address, receives traffic; no rebind at failover.)

/// Upper bound on client connections, whatever the file descriptor limit.
const MAX_CLIENT_CONNECTIONS: usize = 16_384;
/// Descriptors kept for everything else the node does (store, sockets of
/// other roles, health checks).
const RESERVED_FDS: u64 = 256;

/// How many client connections to allow at once: each proxied request
/// needs a second descriptor towards the backend, so half of what the
/// descriptor limit leaves. Running out of descriptors would make connects
/// to healthy backends fail, and those failures would count against them.
pub fn client_connection_cap() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| open_files_limit(&text))
        .unwrap_or(1024);
    cap_for(soft)
}

fn cap_for(soft_fd_limit: u64) -> usize {
    let usable = soft_fd_limit.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(usable)
        .unwrap_or(usize::MAX)
        .clamp(64, MAX_CLIENT_CONNECTIONS)
}

/// The soft "Max open files" from /proc/self/limits ("unlimited" = none).
fn open_files_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_descriptor_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(text), Some(1024));
        assert_eq!(cap_for(1024), 384);
        assert_eq!(cap_for(100), 64);
        assert_eq!(cap_for(u64::MAX), MAX_CLIENT_CONNECTIONS);
        assert!(client_connection_cap() >= 64);
    }
}
