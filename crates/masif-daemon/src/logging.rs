//! Logging set-up: one `tracing` subscriber per process, filtered by the configured level or `MASIF_LOG`.
