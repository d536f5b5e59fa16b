//! The serving core of master and UI: accept loop, TLS handshake under a timeout, connection cap, deadlines, graceful shutdown.
