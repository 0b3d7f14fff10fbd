//! Reading a photograph into 8-bit RGB, whatever it was on disk.
//!
//! The format is sniffed from the bytes, not the name (ILSVRC has PNGs named
//! `.JPEG`); EXIF orientation is applied; CMYK JPEGs and 16-bit files come
//! out as ordinary 8-bit RGB. A failure is a `DecodeError` with a
//! one-line reason, so that the caller can skip the file and say why.

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;
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
    let bytes = std::fs::read(path).map_err(|e| DecodeError(format!("cannot read: {e}")))?;
    if bytes.is_empty() {
        return Err(DecodeError("empty file".into()));
    }
    let reader = ImageReader::new(Cursor::new(&bytes[..]))
        .with_guessed_format()
        .map_err(|e| DecodeError(format!("cannot read: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(DecodeError("not an image format this tool reads".into()));
    };
    // Some decoders fill a missing end with gray and say nothing: a
    // truncated file must never reach a cache as half a picture.
    if let Some(missing) = missing_end(format, &bytes) {
        return Err(DecodeError(format!("{TRUNCATED}: {missing}")));
    }
    let decode_error = |e: image::ImageError| {
        let message = e.to_string();
        let lower = message.to_lowercase();
        if ["eof", "end of file", "unexpected end", "truncated", "not enough data"].iter().any(|w| lower.contains(w)) {
            DecodeError(format!("{TRUNCATED}: {message}"))
        } else {
            DecodeError(format!("cannot decode: {message}"))
        }
    };
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let orientation = decoder.orientation().map_err(|e| DecodeError(format!("bad EXIF orientation: {e}")))?;
    let gray_source = !decoder.color_type().has_color();
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    if image.width() == 0 || image.height() == 0 {
        return Err(DecodeError("image has no pixels".into()));
    }
    Ok(Decoded { rgb: to_rgb8(image), gray_source })
}

/// The reason a skipped file was cut short starts with this.
pub const TRUNCATED: &str = "truncated";

/// What is missing at the end of a file whose format marks its end, if
/// anything. JPEG: an end-of-image marker (FF D9) after the last
/// start-of-scan (FF DA; entropy-coded data never holds FF followed by
/// anything but 00 or a restart marker, so the search cannot be fooled by
/// pixel data). PNG: the IEND chunk. Other formats' decoders report a short
/// file themselves (see the EOF errors in `load_rgb`).
fn missing_end(format: ImageFormat, bytes: &[u8]) -> Option<&'static str> {
    let find_last = |pattern: &[u8]| bytes.windows(pattern.len()).rposition(|w| w == pattern);
    match format {
        ImageFormat::Jpeg => {
            let scan = find_last(&[0xFF, 0xDA])?;
            let end = find_last(&[0xFF, 0xD9]);
            (end.is_none_or(|end| end < scan)).then_some("no JPEG end-of-image marker after the last scan")
        }
        ImageFormat::Png => find_last(b"IEND").is_none().then_some("no PNG IEND chunk"),
        _ => None,
    }
}

/// Converts to 8-bit RGB. Alpha is dropped (photographs are opaque; the
/// colour under a transparent pixel is what the file stores).
fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}
