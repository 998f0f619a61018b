//! The `rigwire` command. Only `--version` exists so far; the subcommands
//! (`serve`, `call`, `ping`, `methods`, `demo`, `bench`) arrive with the
//! blocking runtime, and until then the command says so instead of pretending.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!(
                "rigwire {} (protocol v{})",
                env!("CARGO_PKG_VERSION"),
                rigwire_std::core::PROTOCOL_VERSION
            );
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("rigwire: no subcommands are implemented in this build yet (serve, call, ping, methods, demo and bench arrive with the blocking runtime)");
            ExitCode::from(2)
        }
    }
}
