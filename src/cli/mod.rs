//! The `knockoff` command line: one argument struct per subcommand
//! ([`args`]), a dispatch of one line per mode (below), the subcommands'
//! thin bodies ([`commands`]), human-readable printing apart ([`print`]) and
//! the hidden benchmark subcommands apart ([`bench`]). The work lives in the library.

mod args;
mod bench;
mod commands;
mod print;

use clap::{CommandFactory, FromArgMatches};

pub use args::{Cli, Command, Global, IndexArgs};

/// Runs the command line; returns the process exit code.
#[must_use]
pub fn main() -> i32 {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_logging(matches!(cli.command, Command::Serve(_)));
    match run(cli, &matches) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Logs to stderr, one line per event: `KNOCKOFF_LOG` filters (default:
/// knockoff's own events at `info` for `serve` — requests, jobs, refits,
/// compactions, load shedding — and only warnings for other commands and
/// other crates); `KNOCKOFF_LOG_FORMAT=json` writes one JSON object per
/// line; colours only on a terminal.
fn init_logging(serving: bool) {
    use std::io::IsTerminal;
    let default = if serving { "warn,ort=error,knockoff=info" } else { "warn,ort=error" };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KNOCKOFF_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let json = std::env::var("KNOCKOFF_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        fmt.json().flatten_event(true).with_current_span(false).try_init()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Embed(a) => commands::embed(g, &a),
        Command::Models => commands::models(g),
        Command::Index(a) => commands::index(g, &a),
        Command::Search(a) => commands::search(g, &a),
        Command::Serve(a) => commands::serve(g, &a, matches.subcommand_matches("serve")),
        Command::Eval(a) => commands::eval(g, &a),
        Command::Calibrate(a) => commands::calibrate(g, &a),
        Command::Tune(a) => commands::tune(g, &a),
        Command::Compact(a) => commands::compact(g, &a),
        Command::Stats(a) => commands::stats(g, &a),
        Command::Delete(a) => commands::delete(g, &a),
        Command::Migrate(a) => commands::migrate(g, &a),
        Command::Backup(a) => commands::backup(&a),
        Command::Restore(a) => commands::restore(g, &a),
        Command::BenchAnn(a) => bench::ann(&a),
        Command::BenchLookup(a) => bench::lookup(g, &a),
        Command::BenchEmbed(a) => bench::embed(g, &a),
        Command::MakeCopies(a) => commands::make_copies(&a),
    }
}
