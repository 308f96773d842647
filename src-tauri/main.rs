// Keeps a Windows release build of the desktop app free of a console window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

use chatgowa_lib::cli::{self, Command};

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => return cli::exit_with(&err),
    };
    let result = match cli.command {
        Some(Command::Healthcheck) => chatgowa_lib::healthcheck(&cli.settings),
        Some(Command::HashPassword) => chatgowa_lib::hash_password_command(),
        None if cli.server => chatgowa_lib::run_headless(&cli.settings),
        None => chatgowa_lib::run_default(&cli.settings, cli.minimized),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => cli::exit_with(&err),
    }
}
