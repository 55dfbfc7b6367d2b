//! HTTP load balancer (being written).
