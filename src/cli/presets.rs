//! `dnrg presets` and `dnrg show`: look at presets without running anything.

use super::{CliError, PresetArgs};
use dnrg::preset::{self, PresetSource};
use dnrg::text::printable;
use std::io::{self, Write};
use std::process::ExitCode;

/// One line per preset: name, source, description (or the error of a broken user preset).
pub fn list() -> Result<ExitCode, CliError> {
    let presets = preset::list_presets();
    let width = presets.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for p in &presets {
        let source = match p.source {
            PresetSource::Shipped => "shipped",
            PresetSource::User(_) => "user",
        };
        let about = match &p.error {
            Some(error) => format!("error: {error}"),
            None => p.description.clone(),
        };
        // a user's description is shown, never interpreted by the terminal
        let (name, about) = (printable(&p.name), printable(&about));
        text.push_str(&format!("{name:width$}  {source:7}  {about}\n"));
    }
    emit(&text)
}

/// The resolved preset as TOML.
pub fn show(args: &PresetArgs) -> Result<ExitCode, CliError> {
    let loaded = args.load()?;
    emit(&preset::to_toml(&loaded.config, &loaded.description))
}

/// Write to stdout; a closed pipe (`| head`) is not an error, a full disk is.
fn emit(text: &str) -> Result<ExitCode, CliError> {
    super::check_stdout()?;
    match io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::new(format!("writing to stdout: {e}"))),
    }
}
