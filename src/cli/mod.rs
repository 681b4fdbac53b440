//! The `knockoff` command line: one argument struct per subcommand
//! ([`args`]), a dispatch of one line per mode (below), the subcommands'
//! thin bodies ([`commands`]), human-readable printing apart ([`print`]) and
//! the hidden benchmark subcommands apart ([`bench`]). The work lives in the library.

mod args;
mod bench;
mod commands;
mod print;

use clap::{CommandFactory, FromArgMatches};

pub use args::{Cli, Command, Global, IndexArgs, ModelsArg};

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
    match cli.command {
        Command::Embed(a) => commands::embed(&a.run, &a),
        Command::Models(g) => commands::models(&g),
        Command::Index(a) => commands::index(&a.run, &a),
        Command::Search(a) => commands::search(&a.run, &a),
        Command::Serve(a) => commands::serve(&a.run, &a, matches.subcommand_matches("serve")),
        Command::Eval(a) => commands::eval(&a.run, &a),
        Command::Calibrate(a) => commands::calibrate(&a.run, &a),
        Command::Tune(a) => commands::tune(&a.run, &a),
        Command::Compact(a) => commands::compact(&a.models.global(), &a),
        Command::Stats(a) => commands::stats(&a.models.global(), &a),
        Command::Delete(a) => commands::delete(&a.models.global(), &a),
        Command::Migrate(a) => commands::migrate(&a.models.global(), &a),
        Command::Backup(a) => commands::backup(&a),
        Command::Restore(a) => commands::restore(&a.models.global(), &a),
        Command::BenchAnn(a) => bench::ann(&a),
        Command::BenchLookup(a) => bench::lookup(&a.run, &a),
        Command::BenchEmbed(a) => bench::embed(&a.run, &a),
        Command::MakeCopies(a) => commands::make_copies(&a),
    }
}
