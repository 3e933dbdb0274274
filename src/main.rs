//! The `gateway` binary.

use std::process::ExitCode;

use chrysalis_gateway::config::Config;
use chrysalis_gateway::{logging, server, stack};

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(line) => {
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    let _flush_logs_at_exit = logging::init(config.gateway_log_format, config.gateway_log_buffer_lines);
    let app = match stack::app(&config) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    match server::run(config, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}
