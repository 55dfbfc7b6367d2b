//! The VRRP state machine (filled in next).
