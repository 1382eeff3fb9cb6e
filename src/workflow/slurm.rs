//! Slurm batch scripts for sweeps: one array job whose tasks each run one shard
//! (`dnrg sweep FILE --out DIR`, the shard taken from `SLURM_ARRAY_TASK_*`).

use std::path::Path;

/// What goes into the `#SBATCH` lines.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmOptions {
    /// Array tasks (shards).
    pub tasks: usize,
    pub partition: Option<String>,
    /// Time limit per task in any form sbatch accepts (`30`, `2:00:00`, `1-0`).
    pub time: Option<String>,
    /// CPUs per task; the task runs this many points at once.
    pub cpus: usize,
    pub job_name: String,
}

/// Quote for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The sbatch script. All paths should be absolute: tasks start in the submission directory,
/// which on a cluster is usually, but not always, the same.
pub fn script(dnrg: &Path, sweep_file: &Path, out_dir: &Path, o: &SlurmOptions) -> String {
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(
        "# Written by `dnrg sweep --slurm`. Each array task runs one cost-balanced shard of\n",
    );
    s.push_str("# the sweep (from SLURM_ARRAY_TASK_ID, _MIN and _COUNT); finished points are\n");
    s.push_str(
        "# skipped, so resubmitting after a failure or a time-out only runs what is left.\n",
    );
    s.push_str(&format!("#SBATCH --job-name={}\n", o.job_name));
    s.push_str(&format!("#SBATCH --array=0-{}\n", o.tasks.max(1) - 1));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", o.cpus.max(1)));
    s.push_str("#SBATCH --ntasks=1\n");
    if let Some(t) = &o.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(p) = &o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str(&format!(
        "#SBATCH --output={}\n",
        out_dir.join("logs").join("%A_%a.log").display()
    ));
    s.push_str("set -euo pipefail\n");
    s.push_str("# block threads = the task's CPUs (without CPU binding a task sees every core)\n");
    s.push_str("export DNRG_BLOCK_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n");
    s.push_str(&format!(
        "exec {} sweep {} --out {} --jobs \"${{SLURM_CPUS_PER_TASK:-1}}\"\n",
        shell_quote(&dnrg.display().to_string()),
        shell_quote(&sweep_file.display().to_string()),
        shell_quote(&out_dir.display().to_string()),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a/b.toml"), "/a/b.toml");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
    }
}
