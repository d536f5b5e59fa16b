//! What the Masif daemons (master, UI, agent) share: the serving core (`serve`: one TLS/TCP
//! accept loop with its limits and graceful shutdown), one way to load a YAML configuration
//! that reports every problem (`config`), and logging set-up (`logging`).

pub mod config;
pub mod logging;
pub mod serve;
pub mod shutdown;
