// Keeps a Windows release build of the desktop app free of a console window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

use chatgowa_lib::cli::{self, Command};
use chatgowa_lib::{app, desktop};

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => return cli::exit_with(&err),
    };
    let result = match cli.command {
        Some(Command::Healthcheck) => cli::healthcheck(&cli.settings),
        Some(Command::HashPassword) => cli::hash_password(),
        None if cli.server => app::run_headless(&cli.settings),
        None => desktop::run(&cli.settings, cli.minimized),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => cli::exit_with(&err),
    }
}
