//! `docs/configuration.md` lists every setting: each config key (the
//! parser names them all), each `[verdict]` key, each `KNOCKOFF_*` variable
//! the source reads and each `serve` flag; and every option of every
//! subcommand has help text.

use std::path::Path;

use clap::CommandFactory;

mod common;

use common::root;

fn reference() -> String {
    std::fs::read_to_string(root().join("docs/configuration.md")).unwrap()
}

/// The `KNOCKOFF_*` names in quotes in `dir`'s Rust files.
fn variables_in(dir: &Path, found: &mut std::collections::BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            variables_in(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices("\"KNOCKOFF_") {
                let name: String = text[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
                found.insert(name);
            }
        }
    }
}

#[test]
fn every_setting_in_the_code_is_in_the_configuration_reference() {
    let doc = reference();
    let mut missing = Vec::new();
    // Config keys: the parser lists them all when it meets one it does not know.
    let err = knockoff::api::ConfigFile::parse("no_such_key = 1", Path::new("k.toml")).unwrap_err().to_string();
    let listed = err.split("expected one of").nth(1).unwrap_or_else(|| panic!("{err}"));
    let keys: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
    assert!(keys.len() >= 15 && keys.contains(&"copy_detection"), "{err}");
    missing.extend(keys.iter().filter(|k| !doc.contains(&format!("| `{k}` |"))).map(|k| format!("config key {k}")));
    // `[verdict]` and `[verdict.copy]`: every key they read.
    let verdict = serde_json::to_value(knockoff::search::VerdictConfig::default()).unwrap();
    for (key, value) in verdict.as_object().unwrap() {
        let names: Vec<String> = match value.as_object() {
            Some(inner) => inner.keys().map(|k| format!("verdict.{key}.{k}")).collect(),
            None => vec![format!("verdict.{key}")],
        };
        missing.extend(names.into_iter().filter(|n| !doc.contains(&format!("`{n}`"))));
    }
    // Environment variables the code reads.
    let mut vars = std::collections::BTreeSet::new();
    variables_in(&root().join("src"), &mut vars);
    assert!(vars.contains("KNOCKOFF_STORE") && vars.contains("KNOCKOFF_JOB_LEASE_MS"), "{vars:?}");
    missing.extend(vars.iter().filter(|v| !doc.contains(&format!("`{v}`"))).cloned());
    // `serve`'s flags.
    let cli = knockoff::cli::Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    for long in serve.get_arguments().filter_map(clap::Arg::get_long).filter(|l| *l != "help") {
        if !doc.contains(&format!("`--{long}`")) {
            missing.push(format!("serve --{long}"));
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md does not list: {missing:?}");
}

#[test]
fn every_option_of_every_subcommand_has_help_text() {
    // Also clap's own consistency checks (no option defined twice under one name), which
    // release builds skip at run time.
    knockoff::cli::Cli::command().debug_assert();
    let cli = knockoff::cli::Cli::command();
    let mut bare = Vec::new();
    for sub in cli.get_subcommands() {
        for arg in sub.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                bare.push(format!("{} {}", sub.get_name(), arg.get_id()));
            }
        }
    }
    assert!(bare.is_empty(), "options without help text: {bare:?}");
}

#[test]
fn commands_that_only_open_a_catalog_list_no_model_or_graph_options() {
    // Built, so that options marked global would show on every subcommand.
    let mut cli = knockoff::cli::Cli::command();
    cli.build();
    for name in ["stats", "delete", "compact", "backup", "restore", "migrate"] {
        let sub = cli.find_subcommand(name).unwrap();
        let longs: Vec<&str> = sub.get_arguments().filter_map(clap::Arg::get_long).collect();
        for useless in ["model", "ef-search", "auto-compact", "m", "ef-construction", "threads", "max-pixels"] {
            assert!(!longs.contains(&useless), "{name} lists --{useless}, which does nothing for it");
        }
        if name != "migrate" {
            assert!(longs.contains(&"index") && longs.contains(&"store"), "{name}: {longs:?}");
        }
    }
    // Backup copies records: it opens no model.
    assert!(cli.find_subcommand("backup").unwrap().get_arguments().all(|a| a.get_long() != Some("models")));
}
