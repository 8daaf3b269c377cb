//! The last applied table, kept on disk so a restart without control serves the same
//! endpoints. Written atomically: a crash leaves the old file or the new one.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The table cache in a state directory.
#[derive(Debug)]
pub(crate) struct StateFile {
    dir: PathBuf,
}

const FILE: &str = "table.bin";

impl StateFile {
    pub(crate) fn open(dir: &Path) -> io::Result<StateFile> {
        fs::create_dir_all(dir)?;
        Ok(StateFile {
            dir: dir.to_path_buf(),
        })
    }

    /// The saved table message, if any.
    pub(crate) fn load(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(FILE)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the saved table: write a temporary file, sync it, rename it over the
    /// old one, sync the directory.
    pub(crate) fn save(&self, payload: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(payload)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.dir.join(FILE))?;
        fs::File::open(&self.dir)?.sync_all()
    }
}
