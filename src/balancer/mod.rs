//! The balancer role: the HTTP load balancer (`http/`), L4 TCP services
//! (`tcp/`), and what both share: the backend pool with its health and
//! algorithms, as plain state machines (`pool`, `health`, `pick`).

pub mod health;
pub mod pick;
pub mod pool;
