//! The balancer role: the HTTP load balancer (`http/`), L4 TCP services
//! (`tcp/`), and what both share: the backend pool with its health and
//! algorithms as plain state machines (`pool`, `health`, `pick`), and
//! `shared`, the pool behind a short lock with a bounded wait queue.

pub mod health;
pub mod http;
pub mod listen;
pub mod pick;
pub mod pool;
pub mod shared;
pub mod tcp;
