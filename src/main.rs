//! The `roster` binary: parse the command line, call `roster::run`, turn the result into an
//! exit code. Usage errors exit 1 (like every error; 2 means "changes present" only, 130 an
//! interrupted apply). Every error it prints passes `scrub_webhook_urls` first.

use std::process::ExitCode;

use clap::Parser;
use roster::provider::bitrix24::scrub_webhook_urls;

fn main() -> ExitCode {
    let cli = match roster::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A usage error quotes what was typed, which may be a webhook URL.
            let text = scrub_webhook_urls(&e.render().to_string());
            if e.use_stderr() {
                eprint!("{text}");
                return ExitCode::from(1);
            }
            print!("{text}");
            return ExitCode::from(0);
        }
    };
    match roster::run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("error: {}", scrub_webhook_urls(&describe(&e)));
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
