//! The sink against a real nats-server that each test starts for itself (and may kill):
//! publishing in a projection runtime on PostgreSQL through a broker restart, and the failures
//! a batch reports.

mod backlog;
mod failures;
mod operator;
mod restart;
mod support;
