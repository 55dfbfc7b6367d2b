//! L4 TCP services (being written).
