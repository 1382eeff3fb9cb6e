//! Export of the current run with the library's writers (the same records as `dnrg run`), or
//! of the panel in focus as a figure drawn by the library's plot code (the same figures as
//! `dnrg plot`). The file is written to a temporary file next to the target and moved into
//! place only when complete.

use dnrg::files::{OutputError, OutputFile};
use dnrg::output::Format;
use dnrg::plot::Figure;
use dnrg::record::{Header, ShellRecord, Summary};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What a file name asks for: a figure for `.svg` and `.png`, records otherwise.
pub fn figure_for(path: &str) -> Option<Figure> {
    Figure::for_path(Path::new(path))
}

/// The format's name for messages and the prompt: jsonl, csv, svg or png.
pub fn describe(path: &str) -> String {
    match figure_for(path) {
        Some(f) => f.name().to_string(),
        None => format_for(path).to_string(),
    }
}

/// JSON Lines unless the path ends in `.csv`.
pub fn format_for(path: &str) -> Format {
    if path.to_ascii_lowercase().ends_with(".csv") {
        Format::Csv
    } else {
        Format::Jsonl
    }
}

/// Why an export did not happen.
#[derive(Debug)]
pub enum ExportError {
    /// The file exists and `overwrite` was false.
    Exists(PathBuf),
    Other(String),
}

pub fn write(
    path: &Path,
    header: &Header,
    shells: &[ShellRecord],
    summary: &Summary,
    overwrite: bool,
) -> Result<PathBuf, ExportError> {
    let format = format_for(&path.to_string_lossy());
    write_with(path, overwrite, |file| {
        let mut out = io::BufWriter::new(file);
        {
            let mut writer = format.writer(&mut out);
            writer.header(header)?;
            for shell in shells {
                writer.shell(shell)?;
            }
            writer.done(summary)?;
        }
        out.flush()
    })
}

/// Write `bytes` (a rendered figure) to `path` with the same checks as [`write`].
pub fn write_bytes(path: &Path, bytes: &[u8], overwrite: bool) -> Result<PathBuf, ExportError> {
    write_with(path, overwrite, |file| {
        file.write_all(bytes)?;
        file.flush()
    })
}

/// The checks of `dnrg run --out` and preset saves (links followed, FIFOs, devices and read-only
/// files refused), then `fill` writes the temporary file, which replaces `path` atomically.
fn write_with(
    path: &Path,
    overwrite: bool,
    fill: impl FnOnce(&mut OutputFile) -> io::Result<()>,
) -> Result<PathBuf, ExportError> {
    let fail = |reason: String| ExportError::Other(format!("{}: {reason}", path.display()));
    let refused = |e: OutputError| match e {
        OutputError::Exists(p) => ExportError::Exists(p),
        OutputError::Refused(reason) => fail(reason),
    };
    if path.as_os_str().is_empty() {
        return Err(ExportError::Other("no file name given".into()));
    }
    let mut file = OutputFile::create(path, overwrite).map_err(refused)?;
    fill(&mut file).map_err(|e| fail(e.to_string()))?;
    file.commit().map_err(refused)?;
    Ok(path.to_path_buf())
}
