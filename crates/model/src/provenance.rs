//! What a head file says about how it was made: the trunk it was trained on
//! (a name and a fingerprint of the weights) and the side of the pictures it
//! saw. Kept in the safetensors header's metadata, beside the tensors, as
//! one JSON value under one key (so that a file's bytes are the same at
//! every save: a map of several keys is written in a random order). Heads
//! saved before this existed have none of it.

use crate::ModelError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key.
const KEY: &str = "colorize.provenance";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadProvenance {
    /// `embedded`, `hub` or a path (`weights::trunk_name`).
    pub trunk: Option<String>,
    pub trunk_fingerprint: Option<String>,
    /// The side of the square pictures it was trained on.
    pub input_side: Option<u32>,
}

impl HeadProvenance {
    /// Reads a head file's metadata (the header only).
    pub fn of_file(path: &Path) -> Result<HeadProvenance, ModelError> {
        let bad = |message: String| ModelError::BadFile { path: path.to_path_buf(), message };
        let mut file = std::fs::File::open(path).map_err(|e| bad(format!("unreadable: {e}")))?;
        let mut size = [0u8; 8];
        std::io::Read::read_exact(&mut file, &mut size).map_err(|e| bad(format!("no safetensors header: {e}")))?;
        let size = u64::from_le_bytes(size);
        if size > 100 << 20 {
            return Err(bad(format!("a safetensors header of {size} bytes")));
        }
        let mut header = vec![0u8; size as usize];
        std::io::Read::read_exact(&mut file, &mut header).map_err(|e| bad(format!("cut-short header: {e}")))?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|e| bad(format!("unreadable header: {e}")))?;
        let recorded = header.get("__metadata__").and_then(|m| m.get(KEY)).and_then(|v| v.as_str());
        match recorded {
            None => Ok(HeadProvenance::default()),
            Some(text) => serde_json::from_str(text).map_err(|e| bad(format!("unreadable {KEY}: {e}"))),
        }
    }

    /// As safetensors metadata.
    pub(crate) fn to_metadata(&self) -> HashMap<String, String> {
        // tidy: strings and a number, which always have a JSON form.
        let text = serde_json::to_string(self).expect("provenance serialises");
        HashMap::from([(KEY.to_string(), text)])
    }
}
