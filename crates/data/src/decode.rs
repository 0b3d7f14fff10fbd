//! Reading a photograph into 8-bit RGB, whatever it was on disk.
//!
//! The format is sniffed from the bytes, not the name (ILSVRC has PNGs named
//! `.JPEG`); EXIF orientation is applied; CMYK JPEGs and 16-bit files come
//! out as ordinary 8-bit RGB. A failure is a `DecodeError` with a
//! one-line reason, so that the caller can skip the file and say why.

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::path::Path;

/// A decoded photograph.
pub struct Decoded {
    pub rgb: RgbImage,
    /// The file itself has no colour channels (gray or gray + alpha).
    pub gray_source: bool,
}

/// Why a file could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

pub fn load_rgb(path: &Path) -> Result<Decoded, DecodeError> {
    let meta = std::fs::metadata(path).map_err(|e| DecodeError(format!("cannot read: {e}")))?;
    if meta.len() == 0 {
        return Err(DecodeError("empty file".into()));
    }
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| DecodeError(format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(DecodeError("not an image format this tool reads".into()));
    }
    let mut decoder = reader.into_decoder().map_err(|e| DecodeError(format!("cannot decode: {e}")))?;
    let orientation = decoder.orientation().map_err(|e| DecodeError(format!("bad EXIF orientation: {e}")))?;
    let gray_source = !decoder.color_type().has_color();
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| DecodeError(format!("cannot decode: {e}")))?;
    image.apply_orientation(orientation);
    if image.width() == 0 || image.height() == 0 {
        return Err(DecodeError("image has no pixels".into()));
    }
    Ok(Decoded { rgb: to_rgb8(image), gray_source })
}

/// Converts to 8-bit RGB. Alpha is dropped (photographs are opaque; the
/// colour under a transparent pixel is what the file stores).
fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}
