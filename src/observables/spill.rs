//! Spilling the FDM forward pass's per-shell data to disk (issue #9, item 6).
//!
//! The backward sweep of [`crate::fdm`] visits the shells from the last to the first, so the
//! data that does not fit the memory budget is kept as a stack in one file: the forward pass
//! appends the oldest shells still in memory, the backward pass reads the last one written back
//! and cuts the file there, so the disk use shrinks as the sweep proceeds.
//!
//! The file lives in a directory of its own, `dnrg-spill-XXXXXX` under
//! [`std::env::temp_dir`] (`TMPDIR` moves it), made with `tempfile` and removed when the
//! spectrum is done, fails or is cancelled (the owner is dropped on every path). A process that
//! exits without unwinding — the CLI's exit after its grace period, when a signal arrives
//! during one long block — calls [`remove_all`] first, which removes every live spill
//! directory of this process.
//!
//! The format is the matrices' raw little-endian f64 (column-major, faer's layout), each after
//! its dimensions as two u64: what is read back is bit for bit what was written.

use faer::Mat;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Mutex;

/// The live spill directories of this process, and whether [`remove_all`] has run (after it,
/// no new spill directory may be made: the process is about to exit).
static LIVE: Mutex<(Vec<PathBuf>, bool)> = Mutex::new((Vec::new(), false));

fn live() -> std::sync::MutexGuard<'static, (Vec<PathBuf>, bool)> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remove every spill directory of this process now, for an exit that skips destructors
/// (`std::process::exit`). Spills started afterwards fail.
pub fn remove_all() {
    let mut guard = live();
    for dir in guard.0.drain(..) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    guard.1 = true;
}

/// The spill directories that exist now (for tests and diagnostics).
pub fn live_dirs() -> Vec<PathBuf> {
    live().0.clone()
}

/// The prefix of spill directories' names.
pub const DIR_PREFIX: &str = "dnrg-spill-";

/// One stack of records in one file, in a temporary directory removed on drop.
pub(crate) struct SpillFile {
    dir: tempfile::TempDir,
    file: File,
    /// Start of every record still on the stack.
    starts: Vec<u64>,
    end: u64,
    /// Bytes ever written (the stack's peak is at most this).
    written: u64,
}

impl SpillFile {
    pub(crate) fn create() -> io::Result<SpillFile> {
        let mut guard = live();
        if guard.1 {
            return Err(io::Error::other("the process is exiting"));
        }
        let dir = tempfile::Builder::new().prefix(DIR_PREFIX).tempdir()?;
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("shells.bin"))?;
        guard.0.push(dir.path().to_path_buf());
        Ok(SpillFile {
            dir,
            file,
            starts: Vec::new(),
            end: 0,
            written: 0,
        })
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Append one record written by `f`.
    pub(crate) fn push(
        &mut self,
        f: impl FnOnce(&mut Writer<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.end))?;
        let mut w = Writer {
            inner: BufWriter::with_capacity(1 << 20, &self.file),
            buf: Vec::new(),
        };
        let result = f(&mut w).and_then(|()| w.inner.flush());
        drop(w);
        let pos = self.file.stream_position();
        match (result, pos) {
            (Ok(()), Ok(pos)) => {
                self.starts.push(self.end);
                self.written += pos - self.end;
                self.end = pos;
                Ok(())
            }
            (Err(e), _) | (Ok(()), Err(e)) => {
                // a partial record (a full disk): cut it off again
                let _ = self.file.set_len(self.end);
                Err(e)
            }
        }
    }

    /// Read the last record back with `f` and remove it from the file.
    pub(crate) fn pop<T>(
        &mut self,
        f: impl FnOnce(&mut Reader<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        let start = self
            .starts
            .pop()
            .ok_or_else(|| io::Error::other("no record left to read"))?;
        self.file.seek(SeekFrom::Start(start))?;
        let mut r = Reader {
            inner: BufReader::with_capacity(1 << 20, (&self.file).take(self.end - start)),
            buf: Vec::new(),
        };
        let out = f(&mut r)?;
        drop(r);
        self.file.set_len(start)?;
        self.end = start;
        Ok(out)
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        // the TempDir removes the directory right after this
        live().0.retain(|p| p != self.dir.path());
    }
}

/// Buffered writing of numbers and matrices.
pub(crate) struct Writer<'a> {
    inner: BufWriter<&'a File>,
    buf: Vec<u8>,
}

/// Values converted per write (a column is converted in chunks of this many).
const CHUNK: usize = 4096;

impl Writer<'_> {
    pub(crate) fn u64(&mut self, x: u64) -> io::Result<()> {
        self.inner.write_all(&x.to_le_bytes())
    }

    pub(crate) fn usize(&mut self, x: usize) -> io::Result<()> {
        self.u64(x as u64)
    }

    pub(crate) fn f64s(&mut self, x: &[f64]) -> io::Result<()> {
        for chunk in x.chunks(CHUNK) {
            self.buf.clear();
            self.buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            self.inner.write_all(&self.buf)?;
        }
        Ok(())
    }

    /// Dimensions, then the columns.
    pub(crate) fn mat(&mut self, m: &Mat<f64>) -> io::Result<()> {
        self.usize(m.nrows())?;
        self.usize(m.ncols())?;
        for j in 0..m.ncols() {
            self.f64s(m.col_as_slice(j))?;
        }
        Ok(())
    }

    pub(crate) fn mats(&mut self, m: &[Mat<f64>]) -> io::Result<()> {
        self.usize(m.len())?;
        m.iter().try_for_each(|x| self.mat(x))
    }

    pub(crate) fn ranges(&mut self, r: &[Range<usize>]) -> io::Result<()> {
        self.usize(r.len())?;
        r.iter()
            .try_for_each(|x| self.usize(x.start).and_then(|()| self.usize(x.end)))
    }
}

/// Buffered reading of what [`Writer`] wrote.
pub(crate) struct Reader<'a> {
    inner: BufReader<io::Take<&'a File>>,
    buf: Vec<u8>,
}

impl Reader<'_> {
    pub(crate) fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.inner.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub(crate) fn usize(&mut self) -> io::Result<usize> {
        usize::try_from(self.u64()?).map_err(io::Error::other)
    }

    pub(crate) fn f64s(&mut self, x: &mut [f64]) -> io::Result<()> {
        for chunk in x.chunks_mut(CHUNK) {
            self.buf.resize(8 * chunk.len(), 0);
            self.inner.read_exact(&mut self.buf)?;
            for (v, b) in chunk.iter_mut().zip(self.buf.chunks_exact(8)) {
                *v = f64::from_le_bytes(b.try_into().expect("8 bytes"));
            }
        }
        Ok(())
    }

    pub(crate) fn mat(&mut self) -> io::Result<Mat<f64>> {
        let (r, c) = (self.usize()?, self.usize()?);
        let mut m = Mat::<f64>::zeros(r, c);
        for j in 0..c {
            self.f64s(m.col_as_slice_mut(j))?;
        }
        Ok(m)
    }

    pub(crate) fn mats(&mut self) -> io::Result<Vec<Mat<f64>>> {
        let n = self.usize()?;
        (0..n).map(|_| self.mat()).collect()
    }

    pub(crate) fn ranges(&mut self) -> io::Result<Vec<Range<usize>>> {
        let n = self.usize()?;
        (0..n).map(|_| Ok(self.usize()?..self.usize()?)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_bit_for_bit_and_last_first() {
        let mut s = SpillFile::create().unwrap();
        let dir = s.path().to_path_buf();
        assert!(live_dirs().contains(&dir));
        // values whose bits a decimal round trip would change, and a column stride that faer
        // pads (7 rows)
        let a = Mat::<f64>::from_fn(7, 3, |i, j| (i as f64 + 0.1).powf(j as f64 + 0.3) - 1e-300);
        let b = Mat::<f64>::from_fn(0, 5, |_, _| 0.0);
        s.push(|w| w.mat(&a)).unwrap();
        s.push(|w| {
            w.mats(&[b.clone(), a.clone()])?;
            w.ranges(&[0..1, 1..4])
        })
        .unwrap();
        let (m, r) = s.pop(|r| Ok((r.mats()?, r.ranges()?))).unwrap();
        assert_eq!(m, vec![b, a.clone()]);
        assert_eq!(r, vec![0..1, 1..4]);
        let back = s.pop(|r| r.mat()).unwrap();
        for j in 0..3 {
            for i in 0..7 {
                assert_eq!(back[(i, j)].to_bits(), a[(i, j)].to_bits());
            }
        }
        assert_eq!(std::fs::metadata(dir.join("shells.bin")).unwrap().len(), 0);
        assert!(s.pop(|r| r.u64()).is_err());
        drop(s);
        assert!(!dir.exists() && !live_dirs().contains(&dir));
    }
}
