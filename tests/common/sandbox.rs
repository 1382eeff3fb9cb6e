//! A scratch world for CLI tests: a working directory, a config directory for user presets and
//! a cache directory, so that no test touches the user's own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

pub struct Sandbox {
    root: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let root = TempDir::new().unwrap();
        fs::create_dir(root.path().join("work")).unwrap();
        fs::create_dir(root.path().join("config")).unwrap();
        Sandbox { root }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    pub fn config(&self) -> PathBuf {
        self.root.path().join("config")
    }

    pub fn presets_dir(&self) -> PathBuf {
        self.config().join("presets")
    }

    /// `dnrg ARGS` in the working directory, with the sandbox's config and cache directories
    /// and colour left to the terminal.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnrg"));
        cmd.args(args)
            .current_dir(self.work())
            .env("DNRG_CONFIG_DIR", self.config())
            .env("DNRG_CACHE_DIR", self.root.path().join("cache"))
            .env_remove("NO_COLOR");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Write a file relative to the working directory.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.work().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    pub fn write_user_preset(&self, name: &str, text: &str) -> PathBuf {
        let path = self.presets_dir().join(format!("{name}.toml"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    /// Names of the entries of a directory, sorted.
    pub fn files(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}
