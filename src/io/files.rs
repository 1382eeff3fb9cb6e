//! Files the user names: bounded reads of input files and one safe, atomic way to write output
//! (`dnrg run --out`, the explorer's export and user presets all go through [`OutputFile`]).
//!
//! Reading: at most [`MAX_INPUT_BYTES`] are read, through a size-limited reader, so
//! `/dev/zero`, a FIFO that never ends or a 100 MB file cost at most the cap in memory.
//!
//! Writing: the data goes to a temporary file `.dnrg-*.tmp` in the target's directory that is
//! renamed over the target only when complete, so an error or a signal never leaves a partial
//! file, and a temporary file is removed when [`OutputFile`] is dropped. Symbolic links are
//! followed (like a shell's `>`): the link's target is replaced and the link stays, and a
//! dangling link creates its target. FIFOs, devices, sockets and directories are refused (a
//! rename would replace them by a regular file). A file without write permission is not
//! replaced; the permission bits are checked explicitly, because root may write anything.
//! A replaced file keeps its permission bits.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tempfile::NamedTempFile;

/// Largest input file read (presets are a few hundred bytes). The TOML parser needs up to
/// ~80–120 bytes per input byte on pathological input (measured peak RSS of `dnrg run` on 1 MiB
/// files: 55 MB for `[[[…`, 119 MB for `a=[1,1,1,…]` with order-preserving tables, 42 MB for
/// 100k keys), so a cap of 256 KiB keeps any input file near 30 MB. Presets, sweep and fit
/// files are a few kB.
pub const MAX_INPUT_BYTES: u64 = 256 << 10;

/// Cap for data files the workflow reads back (run records, sweep manifests): far above any
/// run's JSON Lines (a few MB with every level listed), far below what would hurt.
pub const MAX_DATA_BYTES: u64 = 256 << 20;

/// Prefix and suffix of the temporary files of [`OutputFile`].
pub const TEMP_PREFIX: &str = ".dnrg-";
pub const TEMP_SUFFIX: &str = ".tmp";

/// The whole of `path` as UTF-8 text, refusing anything larger than `cap` bytes without
/// reading more than `cap + 1` bytes of it.
pub fn read_limited(path: &Path, cap: u64) -> io::Result<String> {
    let file = File::open(path)?;
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > cap
    {
        return Err(too_large(cap, Some(meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(cap, None));
    }
    String::from_utf8(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text ({e})")))
}

fn too_large(cap: u64, len: Option<u64>) -> io::Error {
    let size = len.map_or(String::new(), |len| format!("{len} bytes, "));
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "{size}larger than the limit for input files ({})",
            fmt_bytes(cap)
        ),
    )
}

/// `4 MiB`, `1.5 GiB`, `512 bytes`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64;
    let mut unit = "";
    for u in UNITS {
        v /= 1024.0;
        unit = u;
        if v < 1024.0 {
            break;
        }
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// Why an output file cannot be written.
#[derive(Debug)]
pub enum OutputError {
    /// The target exists and overwriting was not asked for.
    Exists(PathBuf),
    /// Anything else, with the reason (the path is not part of it).
    Refused(String),
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::Exists(path) => write!(f, "{} exists", path.display()),
            OutputError::Refused(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for OutputError {}

/// An output file being written: a temporary file next to the target, renamed into place by
/// [`OutputFile::commit`], deleted when dropped without a commit.
#[derive(Debug)]
pub struct OutputFile {
    tmp: NamedTempFile,
    /// The file that will be replaced or created (a link's target, not the link).
    target: PathBuf,
    overwrite: bool,
}

/// Longest chain of symbolic links followed.
const MAX_LINKS: usize = 40;

/// Where writing to `path` actually goes: symbolic links followed, also dangling ones.
fn resolve(path: &Path) -> Result<(PathBuf, Option<fs::Metadata>), OutputError> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&current).map_err(|e| {
                    OutputError::Refused(format!("cannot follow the link: {}", os_reason(&e)))
                })?;
                current = match current.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Ok(meta) => return Ok((current, Some(meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((current, None)),
            Err(e) => return Err(OutputError::Refused(os_reason(&e))),
        }
    }
    Err(OutputError::Refused(
        "too many levels of symbolic links".into(),
    ))
}

/// The OS's words for an error, without the path tempfile adds to its messages.
fn os_reason(e: &io::Error) -> String {
    e.raw_os_error().map_or_else(
        || e.to_string(),
        |c| io::Error::from_raw_os_error(c).to_string(),
    )
}

impl OutputFile {
    /// Check that `path` may be written and create the temporary file. With `overwrite`
    /// false an existing target is [`OutputError::Exists`].
    pub fn create(path: &Path, overwrite: bool) -> Result<OutputFile, OutputError> {
        let refuse = |reason: &str| Err(OutputError::Refused(reason.to_string()));
        if path.as_os_str().is_empty() {
            return refuse("no file name given");
        }
        let (target, meta) = resolve(path)?;
        if let Some(meta) = &meta {
            let kind = meta.file_type();
            if kind.is_dir() {
                return refuse("is a directory");
            }
            if !kind.is_file() {
                return refuse(&format!(
                    "not a regular file ({}); to write to it, redirect stdout instead",
                    file_kind(meta)
                ));
            }
            if !overwrite {
                return Err(OutputError::Exists(path.to_path_buf()));
            }
            if read_only(meta) {
                return refuse("is read-only (no write permission); it was not replaced");
            }
            // the kernel's verdict for users other than root (groups, ACLs)
            if let Err(e) = fs::OpenOptions::new().write(true).open(&target) {
                return refuse(&format!("cannot write it: {}", os_reason(&e)));
            }
        }
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return refuse(&format!("'{}' is not a directory", dir.display())),
            Err(_) => return refuse(&format!("directory '{}' does not exist", dir.display())),
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
        // a new file is like any file the user creates (0666 less the umask); a replaced one
        // keeps its mode
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta
                .as_ref()
                .map_or(0o666, |m| m.permissions().mode() & 0o7777);
            builder.permissions(fs::Permissions::from_mode(mode));
        }
        let tmp = builder.tempfile_in(&dir).map_err(|e| {
            OutputError::Refused(format!(
                "cannot write in '{}': {}",
                dir.display(),
                os_reason(&e)
            ))
        })?;
        Ok(OutputFile {
            tmp,
            target,
            overwrite,
        })
    }

    /// The temporary file (for signal handlers that must remove it before exiting).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// The file that [`OutputFile::commit`] replaces or creates.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flush to disk and rename into place. On error the temporary file is removed.
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        let fail = |e: &io::Error| OutputError::Refused(os_reason(e));
        self.tmp.as_file().sync_all().map_err(|e| fail(&e))?;
        let persisted = if self.overwrite {
            self.tmp.persist(&self.target)
        } else {
            self.tmp.persist_noclobber(&self.target)
        };
        match persisted {
            Ok(_) => Ok(self.target),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                Err(OutputError::Exists(self.target))
            }
            Err(e) => Err(fail(&e.error)),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// No write permission bit for anyone: such a file is not replaced, whoever asks.
#[cfg(unix)]
fn read_only(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o222 == 0
}

#[cfg(not(unix))]
fn read_only(meta: &fs::Metadata) -> bool {
    meta.permissions().readonly()
}

#[cfg(unix)]
fn file_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn file_kind(_: &fs::Metadata) -> &'static str {
    "a special file"
}

/// Remove temporary files of [`OutputFile`] (and of older versions, `.tmp*`) left in `dir`
/// by a process that was killed, if they are older than `age` (a younger one may belong to a
/// save in progress). Returns how many were removed; errors are ignored.
pub fn remove_stale_temps(dir: &Path, age: Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = (name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX))
            || name.starts_with(".tmp");
        if !ours {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|d| d >= age);
        if meta.is_file() && old && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn write(path: &Path, overwrite: bool, text: &str) -> Result<PathBuf, OutputError> {
        let mut out = OutputFile::create(path, overwrite)?;
        out.write_all(text.as_bytes()).unwrap();
        out.commit()
    }

    #[test]
    fn limited_reads_refuse_large_and_endless_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        fs::write(&big, vec![b'['; 5000]).unwrap();
        let err = read_limited(&big, 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("5000 bytes"), "{err}");
        // a device has no size: the reader stops one byte past the cap
        let err = read_limited(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("limit for input files (1 MiB)"),
            "{err}"
        );
        let small = dir.path().join("small.toml");
        fs::write(&small, "a = 1\n").unwrap();
        assert_eq!(read_limited(&small, 6).unwrap(), "a = 1\n");
    }

    #[test]
    fn links_are_followed_dangling_ones_create_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("real"), "old").unwrap();
        symlink("real", d.join("link")).unwrap();
        write(&d.join("link"), true, "new").unwrap();
        assert_eq!(fs::read_to_string(d.join("real")).unwrap(), "new");
        assert!(
            fs::symlink_metadata(d.join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        symlink("created", d.join("dangling")).unwrap();
        write(&d.join("dangling"), false, "x").unwrap();
        assert_eq!(fs::read_to_string(d.join("created")).unwrap(), "x");
        assert_eq!(names(d), ["created", "dangling", "link", "real"]);
    }

    #[test]
    fn special_and_read_only_files_are_refused_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let fifo = d.join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = OutputFile::create(&fifo, true).unwrap_err().to_string();
        assert!(err.contains("not a regular file (a FIFO)"), "{err}");
        symlink("fifo", d.join("to-fifo")).unwrap();
        let err = OutputFile::create(&d.join("to-fifo"), true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a FIFO"),
            "a link to a FIFO is refused alike: {err}"
        );
        let err = OutputFile::create(Path::new("/dev/null"), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a device"), "{err}");
        let ro = d.join("ro");
        fs::write(&ro, "keep").unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o444)).unwrap();
        let err = write(&ro, true, "x").unwrap_err().to_string();
        assert!(err.contains("read-only"), "{err}");
        assert_eq!(fs::read_to_string(&ro).unwrap(), "keep");
        assert!(matches!(
            write(&ro, false, "x"),
            Err(OutputError::Exists(_))
        ));
        assert_eq!(
            names(d),
            ["fifo", "ro", "to-fifo"],
            "no temporary file left"
        );
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_dropped_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "old").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        write(&f, true, "new").unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let out = OutputFile::create(&dir.path().join("g"), false).unwrap();
        assert!(out.temp_path().exists());
        drop(out);
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn only_old_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [".dnrg-a.tmp", ".tmpXYZ", "keep.toml", ".dnrg-young.tmp"] {
            fs::write(d.join(name), "").unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(3600);
        for name in [".dnrg-a.tmp", ".tmpXYZ", "keep.toml"] {
            File::options()
                .write(true)
                .open(d.join(name))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        assert_eq!(remove_stale_temps(d, Duration::from_secs(60)), 2);
        assert_eq!(names(d), [".dnrg-young.tmp", "keep.toml"]);
    }
}
