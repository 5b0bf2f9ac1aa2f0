//! The `roster` binary: parse the command line, call `roster::run`, turn the result into an
//! exit code. Usage errors exit 1 (like every error; 2 means "changes present" only).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match roster::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match roster::run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, each cause once: an error that already quotes its
/// source (`cannot read x: No such file`) is not followed by that source again.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
