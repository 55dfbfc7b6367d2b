//! The PostgreSQL v3 wire protocol: reading frames under a size limit and
//! writing the messages the pooler makes itself.
