//! `masif-ui --config FILE [--check-config]`: flags, configuration, logging, then the
//! library until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use masif_daemon::{config, logging, shutdown};
use masif_ui::{cli::Args, config::Config};

fn main() -> ExitCode {
    let args = Args::parse();
    let config: Config = match config::load_or_report(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if args.check_config {
        // Everything the UI needs (htpasswd, TLS files) was loaded with the file.
        return config::report_check(&args.config, &[]);
    }
    logging::init(config.log_level.directive(), logging::Output::Stdout);
    let result =
        shutdown::run_until_signal(tokio::runtime::Builder::new_multi_thread(), |shutdown| {
            masif_ui::run(config, shutdown)
        });
    logging::exit_code("masif-ui", result)
}
