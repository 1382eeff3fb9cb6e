//! `dnrg presets` and `dnrg show`: look at presets without running anything.

use super::{CliError, PresetArgs};
use dnrg::preset::{self, PresetSource};
use std::process::ExitCode;

/// One line per preset: name, source, description (or the error of a broken user preset).
pub fn list() -> Result<ExitCode, CliError> {
    let presets = preset::list_presets();
    let width = presets.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &presets {
        let source = match p.source {
            PresetSource::Shipped => "shipped",
            PresetSource::User(_) => "user",
        };
        let text = match &p.error {
            Some(error) => format!("error: {error}"),
            None => p.description.clone(),
        };
        println!("{:width$}  {source:7}  {text}", p.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// The resolved preset as TOML.
pub fn show(args: &PresetArgs) -> Result<ExitCode, CliError> {
    let loaded = args.load()?;
    print!("{}", preset::to_toml(&loaded.config, &loaded.description));
    Ok(ExitCode::SUCCESS)
}
