//! Output files: every target checked before anything is computed or
//! written, each written through the path the user gave, and nothing left
//! behind when a command fails.
//!
//! - A regular file (new or existing) is written to a temporary file in the
//!   same directory, which is renamed over it only when every output of the
//!   command is complete ([`Outputs::commit`]). New files get the mode
//!   `0666 & !umask`; an existing file keeps its mode.
//! - A symlink is followed: its target is what gets replaced, and the link
//!   stays. A dangling link is refused.
//! - FIFOs and devices (`/dev/null`, `/dev/stdout`) are refused unless the
//!   command got `--allow-special-output`; then they are opened and written
//!   in place, never renamed over. Directories and sockets are refused.
//! - Two outputs naming the same file (after symlinks) are refused.
//!
//! Every refusal, and an output that cannot be created (a missing or
//! unwritable directory), is a [`CliError::Input`] (exit code 2) naming the
//! path as the user gave it.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::common::{CliError, CliResult};

/// Where an output goes.
enum Sink {
    /// A regular file, replaced by `tmp` on commit.
    Replace {
        tmp: tempfile::NamedTempFile,
        dest: PathBuf,
        mode: Option<u32>,
    },
    /// A FIFO or device the user allowed: written in place.
    InPlace(PathBuf),
}

struct Target {
    flag: String,
    given: PathBuf,
    key: PathBuf,
    sink: Sink,
}

/// The outputs of one command. Dropping it uncommitted deletes every
/// temporary file it made.
pub struct Outputs {
    allow_special: bool,
    targets: Vec<Target>,
}

/// An output registered with [`Outputs::add`].
#[derive(Clone, Copy, Debug)]
pub struct OutputId(usize);

impl Outputs {
    /// `allow_special`: the command's `--allow-special-output`.
    pub fn new(allow_special: bool) -> Self {
        Outputs {
            allow_special,
            targets: Vec::new(),
        }
    }

    /// Checks the output `flag` names at `path` and reserves it: a temporary
    /// file beside a regular target (which proves the directory writable).
    pub fn add(&mut self, flag: &str, path: &Path) -> CliResult<OutputId> {
        let shown = path.display();
        let refuse = |why: String| CliError::Input(format!("{flag} {shown}: {why}"));
        let link = fs::symlink_metadata(path);
        let (dest, meta) = match &link {
            Ok(m) if m.file_type().is_symlink() => {
                let dest = fs::canonicalize(path).map_err(|e| {
                    refuse(format!("a symlink whose target cannot be reached ({e})"))
                })?;
                let meta = fs::metadata(&dest).map_err(|e| refuse(e.to_string()))?;
                (dest, Some(meta))
            }
            Ok(m) => (path.to_path_buf(), Some(m.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (path.to_path_buf(), None),
            Err(e) => return Err(refuse(e.to_string())),
        };
        let special = meta.as_ref().and_then(|m| special_kind(m.file_type()));
        if let Some(m) = &meta {
            if m.is_dir() {
                return Err(refuse("is a directory".into()));
            }
        }
        let key = match &meta {
            Some(_) => fs::canonicalize(&dest).map_err(|e| refuse(e.to_string()))?,
            None => {
                let dir = parent_of(&dest);
                let dir = fs::canonicalize(dir).map_err(|e| {
                    refuse(format!(
                        "its directory {} cannot be used ({e})",
                        dir.display()
                    ))
                })?;
                dir.join(
                    dest.file_name()
                        .ok_or_else(|| refuse("names no file".into()))?,
                )
            }
        };
        if let Some(other) = self.targets.iter().find(|t| t.key == key) {
            return Err(CliError::Input(format!(
                "{flag} {shown} and {} {} name the same file: give each output its own path",
                other.flag,
                other.given.display()
            )));
        }
        let sink = match special {
            Some("socket") => return Err(refuse("is a socket".into())),
            Some(kind) if !self.allow_special => {
                return Err(refuse(format!(
                    "is a {kind}, not a regular file; pass --allow-special-output to write into it"
                )));
            }
            Some(_) => Sink::InPlace(dest),
            None => {
                let dir = parent_of(&dest);
                let tmp = tempfile::Builder::new()
                    .prefix(".wgpu-norm-")
                    .tempfile_in(dir)
                    .map_err(|e| refuse(format!("cannot be written ({e})")))?;
                let mode = meta.as_ref().map(file_mode);
                Sink::Replace { tmp, dest, mode }
            }
        };
        self.targets.push(Target {
            flag: flag.to_string(),
            given: path.to_path_buf(),
            key,
            sink,
        });
        Ok(OutputId(self.targets.len() - 1))
    }

    /// Writes output `id`'s bytes through `write` (buffered): into its
    /// temporary file, or straight into an allowed FIFO or device.
    pub fn write(
        &mut self,
        id: OutputId,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> CliResult {
        let t = &mut self.targets[id.0];
        let fail = |e: std::io::Error| {
            CliError::Input(format!(
                "{} {}: cannot be written ({e})",
                t.flag,
                t.given.display()
            ))
        };
        match &mut t.sink {
            Sink::Replace { tmp, .. } => {
                let mut out = BufWriter::new(tmp.as_file_mut());
                write(&mut out).map_err(fail)?;
                out.flush().map_err(fail)?;
            }
            Sink::InPlace(dest) => {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&*dest)
                    .map_err(fail)?;
                let mut out = BufWriter::new(file);
                write(&mut out).map_err(fail)?;
                out.flush().map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Writes `bytes` to output `id`.
    pub fn write_bytes(&mut self, id: OutputId, bytes: &[u8]) -> CliResult {
        self.write(id, |w| w.write_all(bytes))
    }

    /// Moves every temporary file over its target, with its mode.
    pub fn commit(self) -> CliResult {
        let umask = umask();
        for t in self.targets {
            if let Sink::Replace { tmp, dest, mode } = t.sink {
                let fail = |e: String| {
                    CliError::Input(format!(
                        "{} {}: cannot be written ({e})",
                        t.flag,
                        t.given.display()
                    ))
                };
                set_mode(tmp.path(), mode.unwrap_or(0o666 & !umask))
                    .map_err(|e| fail(e.to_string()))?;
                tmp.persist(&dest).map_err(|e| fail(e.error.to_string()))?;
            }
        }
        Ok(())
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(unix)]
fn special_kind(ft: fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        Some("FIFO")
    } else if ft.is_char_device() {
        Some("character device")
    } else if ft.is_block_device() {
        Some("block device")
    } else if ft.is_socket() {
        Some("socket")
    } else {
        None
    }
}

#[cfg(not(unix))]
fn special_kind(ft: fs::FileType) -> Option<&'static str> {
    (!ft.is_file() && !ft.is_dir()).then_some("special file")
}

#[cfg(unix)]
fn file_mode(m: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn file_mode(_: &fs::Metadata) -> u32 {
    0o666
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// The process's umask (read by setting it and putting it back: the CLI
/// commits its outputs from one thread).
#[cfg(unix)]
fn umask() -> u32 {
    // SAFETY: umask only swaps the process's file-mode mask.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

#[cfg(not(unix))]
fn umask() -> u32 {
    0o022
}
