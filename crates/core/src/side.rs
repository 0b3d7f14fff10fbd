//! `Side`: the side of a square model input, checked once where it enters.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The side, in pixels, of the square images the cache stores and the model
/// sees. The trunk pools twice, so a side is a multiple of 4; it is at least
/// 16 so that the third tap is no smaller than 4x4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Side(u32);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("image side {0} is invalid: it must be a multiple of 4 between 16 and 4096")]
pub struct SideError(pub u32);

impl Side {
    pub const MIN: u32 = 16;
    pub const MAX: u32 = 4096;

    pub fn new(px: u32) -> Result<Self, SideError> {
        if (Self::MIN..=Self::MAX).contains(&px) && px.is_multiple_of(4) {
            Ok(Side(px))
        } else {
            Err(SideError(px))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Pixels in one plane.
    pub fn area(self) -> usize {
        (self.0 as usize) * (self.0 as usize)
    }
}

impl TryFrom<u32> for Side {
    type Error = SideError;
    fn try_from(px: u32) -> Result<Self, SideError> {
        Side::new(px)
    }
}

impl From<Side> for u32 {
    fn from(side: Side) -> u32 {
        side.0
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_multiples_of_four_in_range() {
        assert_eq!(Side::new(224).map(Side::get), Ok(224));
        assert_eq!(Side::new(16).map(Side::area), Ok(256));
        assert_eq!(Side::new(30), Err(SideError(30)));
        assert_eq!(Side::new(12), Err(SideError(12)));
        assert_eq!(Side::new(8192), Err(SideError(8192)));
    }
}
