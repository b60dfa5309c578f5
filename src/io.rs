//! Writing files so that nothing is lost: a file the kit writes appears whole or not at all.

use std::path::Path;

use crate::input::InputError;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed to disk
/// (`fsync`), then renamed over `path`; the temporary file is removed on any error. A crash or a
/// full disk never leaves a truncated file under the final name, and an existing file stays intact
/// until the new one is complete. A `path` naming a folder is refused. Errors name the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InputError> {
    use std::io::Write;
    if path.is_dir() {
        return Err(InputError::unusable(path, "is a folder: give a file name to write"));
    }
    let Some(name) = path.file_name() else {
        return Err(InputError::unusable(path, "has no file name to write"));
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| InputError::io(dir, "create the folder of", e))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(InputError::io(path, "write", e));
    }
    // the rename itself is durable once the folder is synced (best effort: not every platform can)
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder as the target is refused and leaves no temporary file behind; a file is replaced
    /// whole.
    #[test]
    fn atomic_write_replaces_files_and_refuses_folders() {
        let dir = std::env::temp_dir().join(format!("va_io_{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let err = write_atomic(&dir.join("sub"), b"x").unwrap_err().to_string();
        assert!(err.contains("is a folder"), "{err}");
        write_atomic(&dir.join("f.bin"), b"one").unwrap();
        write_atomic(&dir.join("f.bin"), b"two").unwrap();
        assert_eq!(std::fs::read(dir.join("f.bin")).unwrap(), b"two");
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
