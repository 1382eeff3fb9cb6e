//! `dnrg tui`: the interactive explorer (see `crate::tui`).

use super::{CliError, PresetArgs};
use clap::Args;
use std::process::ExitCode;
use std::str::FromStr;

#[derive(Args, Debug, Clone, Default)]
pub struct TuiArgs {
    #[command(flatten)]
    pub preset: PresetArgs,
    /// Render to a virtual terminal instead of the real one (for scripted checks)
    #[arg(long)]
    pub headless: bool,
    /// Size of the virtual terminal in headless mode
    #[arg(long, value_name = "WxH", default_value = "80x24")]
    pub size: Size,
    /// Keys to feed the explorer, in order (headless mode; without it: <wait>). Plain characters are key
    /// presses; <Enter> <Esc> <Tab> <S-Tab> <BS> <Del> <Space> <Up> <Down> <Left> <Right>
    /// <Home> <End> <PgUp> <PgDn> <C-x> <lt> are keys; <wait> waits until the current run is
    /// complete, <wait:500ms> handles events for that long, <shells:N> waits until N shells
    /// are shown, <resize:WxH> resizes the virtual terminal, <paste:TEXT> pastes TEXT
    #[arg(
        long,
        value_name = "KEYS",
        requires = "headless",
        allow_hyphen_values = true
    )]
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
        let parse = |n: &str| {
            let n = n.trim().parse::<u16>().ok()?;
            (n > 0 && n <= crate::tui::MAX_SIDE).then_some(n)
        };
        s.split_once(['x', 'X'])
            .and_then(|(w, h)| Some((parse(w)?, parse(h)?)))
            .map(|(width, height)| Size { width, height })
            .ok_or_else(|| {
                format!("expected WIDTHxHEIGHT such as 80x24, each at most 1000, found '{s}'")
            })
    }
}

pub fn tui(args: TuiArgs) -> Result<ExitCode, CliError> {
    let preset = args.preset.load()?;
    // without a script, a headless session shows the complete run (the first frame only
    // says "waiting for the first shell…")
    let headless = args.headless.then(|| crate::tui::Headless {
        size: (args.size.width, args.size.height),
        keys: args.keys.unwrap_or_else(|| "<wait>".into()),
    });
    if headless.is_some() {
        super::check_stdout()?;
    }
    match crate::tui::run(crate::tui::Options { preset, headless }) {
        Ok(()) => Ok(match super::signals::received() {
            Some(signal) => ExitCode::from(super::signals::exit_code(signal)),
            None => ExitCode::SUCCESS,
        }),
        Err(crate::tui::Error::Unavailable(reason)) => {
            eprintln!("error: {}", dnrg::text::printable(&reason));
            Ok(ExitCode::from(1))
        }
        Err(crate::tui::Error::Failed(reason)) => Err(CliError::new(reason)),
    }
}
