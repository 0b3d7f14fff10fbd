//! What a head file says about how it was made: the trunk it was trained on
//! (a name and a fingerprint of the weights) and the side of the pictures it
//! saw. Kept in the safetensors header's metadata, beside the tensors.
//! Heads saved before this existed have none of it.

use crate::ModelError;
use std::collections::HashMap;
use std::path::Path;

const TRUNK: &str = "trunk";
const TRUNK_FINGERPRINT: &str = "trunk_fingerprint";
const INPUT_SIDE: &str = "input_side";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
        let meta = header.get("__metadata__").and_then(|m| m.as_object());
        let text = |key: &str| meta.and_then(|m| m.get(key)).and_then(|v| v.as_str()).map(str::to_string);
        let input_side = match text(INPUT_SIDE) {
            None => None,
            Some(side) => Some(side.parse().map_err(|_| bad(format!("{INPUT_SIDE} is '{side}', not a number")))?),
        };
        Ok(HeadProvenance { trunk: text(TRUNK), trunk_fingerprint: text(TRUNK_FINGERPRINT), input_side })
    }

    /// As safetensors metadata.
    pub(crate) fn to_metadata(&self) -> HashMap<String, String> {
        let mut meta = HashMap::new();
        if let Some(trunk) = &self.trunk {
            meta.insert(TRUNK.to_string(), trunk.clone());
        }
        if let Some(fingerprint) = &self.trunk_fingerprint {
            meta.insert(TRUNK_FINGERPRINT.to_string(), fingerprint.clone());
        }
        if let Some(side) = self.input_side {
            meta.insert(INPUT_SIDE.to_string(), side.to_string());
        }
        meta
    }
}
