//! Export of the current run with the library's writers (the same records as `dnrg run`).
//! The file is written to a temporary file next to the target and moved into place only
//! when complete.

use dnrg::output::Format;
use dnrg::record::{Header, ShellRecord, Summary};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
    let fail = |reason: String| ExportError::Other(format!("{}: {reason}", path.display()));
    if path.as_os_str().is_empty() {
        return Err(ExportError::Other("no file name given".into()));
    }
    if path.is_dir() {
        return Err(fail("is a directory".into()));
    }
    if path.exists() && !overwrite {
        return Err(ExportError::Exists(path.to_path_buf()));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(fail(format!(
            "directory '{}' does not exist",
            dir.display()
        )));
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(".dnrg-").suffix(".tmp");
    // like any file the user creates: readable by others unless the umask says otherwise
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| fail(format!("cannot write in '{}': {}", dir.display(), e.kind())))?;
    let format = format_for(&path.to_string_lossy());
    let written: io::Result<()> = (|| {
        let file = tmp.as_file_mut();
        let mut out = io::BufWriter::new(file);
        {
            let mut writer = format.writer(&mut out);
            writer.header(header)?;
            for shell in shells {
                writer.shell(shell)?;
            }
            writer.done(summary)?;
        }
        out.flush()?;
        Ok(())
    })();
    written.map_err(|e| fail(e.to_string()))?;
    tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
    let persisted = if overwrite {
        tmp.persist(path).map(|_| ())
    } else {
        tmp.persist_noclobber(path).map(|_| ())
    };
    match persisted {
        Ok(()) => Ok(path.to_path_buf()),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            Err(ExportError::Exists(path.to_path_buf()))
        }
        Err(e) => Err(fail(e.error.to_string())),
    }
}
