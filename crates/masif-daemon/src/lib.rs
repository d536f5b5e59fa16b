//! What the Masif daemons (master, UI, agent) share: the serving core (`serve`: one TLS/TCP
//! accept loop with its limits and graceful shutdown), one way to load a YAML configuration
//! that reports every problem (`config`), logging set-up (`logging`), the Prometheus
//! endpoint (`metrics`) and the shutdown signal (`shutdown`).

#![warn(unreachable_pub)]

pub mod config;
pub mod logging;
pub mod metrics;
pub mod serve;
pub mod shutdown;
