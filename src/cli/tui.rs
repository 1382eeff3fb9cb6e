//! `dnrg tui`: the interactive explorer (not built yet; the arguments are already the contract).

use super::CliError;
use clap::Args;
use std::process::ExitCode;
use std::str::FromStr;

#[derive(Args, Debug, Clone, Default)]
pub struct TuiArgs {
    /// Preset name (see `dnrg presets`) or path to a .toml file [default: kondo-symmetric]
    pub preset: Option<String>,
    /// Render to a virtual terminal instead of the real one (for scripted checks)
    #[arg(long)]
    pub headless: bool,
    /// Size of the virtual terminal in headless mode
    #[arg(long, value_name = "WxH", default_value = "80x24")]
    pub size: Size,
    /// Keys to feed the explorer, in order (headless mode)
    #[arg(long)]
    pub keys: Option<String>,
}

/// Terminal size in cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u16,
    pub height: u16,
}

impl Default for Size {
    fn default() -> Self {
        Size {
            width: 80,
            height: 24,
        }
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let parse = |n: &str| n.trim().parse::<u16>().ok().filter(|&n| n > 0);
        s.split_once(['x', 'X'])
            .and_then(|(w, h)| Some((parse(w)?, parse(h)?)))
            .map(|(width, height)| Size { width, height })
            .ok_or_else(|| format!("expected WIDTHxHEIGHT such as 80x24, found '{s}'"))
    }
}

pub fn tui(_args: TuiArgs) -> Result<ExitCode, CliError> {
    eprintln!("the explorer is not built yet; try `dnrg run` or `dnrg presets`");
    Ok(ExitCode::from(1))
}
