//! `masif-pki`: parses the command line and runs it; see `masif_pki::cli`.

use clap::Parser;
use masif_pki::cli::{run, Cli};

fn main() {
    // Debug logs (the easy-rsa command lines) with RUST_LOG=debug, on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Usage errors are UNKNOWN (3) for monitoring, not clap's 2 (CRITICAL).
            let _ = e.print();
            std::process::exit(3);
        }
    };
    let outcome = run(cli);
    print!("{}", outcome.stdout);
    std::process::exit(outcome.code);
}
