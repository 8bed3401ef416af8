//! Image thumbnails: turns the bytes of an uploaded image into a small JPEG (or, when the image
//! has transparency, a lossless WebP) whose longest side is `longest_side`, upright according to
//! its EXIF orientation. This module owns bounded decoding: the format comes from the content,
//! never from a file name; dimensions and the memory a decode needs are checked against
//! [`ThumbnailLimits`] before any pixel buffer is allocated (a "decompression bomb" is refused from
//! its header); truncated data is an error rather than a partly grey thumbnail; decoder panics are
//! caught and reported. It is plain synchronous CPU work: it must not be async, know about HTTP,
//! the store or blobs, or read a whole file into memory itself. Callers run it on a blocking
//! thread, bounded by a semaphore, and decide what to do with the bytes and the errors.

mod jpeg;

use std::any::Any;
use std::io::{self, BufRead, Seek};
use std::panic::{self, AssertUnwindSafe};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::error::{LimitErrorKind, UnsupportedErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageError, ImageFormat, ImageReader};

/// JPEG quality of thumbnails: small files, artefacts invisible at thumbnail size.
const JPEG_QUALITY: u8 = 80;

/// How much work a thumbnail may cost. The defaults fit a 2-core server with a few concurrent
/// thumbnails: a 16384 x 16384 limit admits any camera photo, and 256 MiB admits a decoded
/// 80-megapixel RGB image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbnailLimits {
    /// Widest source image that is decoded at all.
    pub max_width: u32,
    /// Tallest source image that is decoded at all.
    pub max_height: u32,
    /// Bytes the decoded image and the decoder's own buffers may take.
    pub max_alloc: u64,
    /// Longest side of the thumbnail; smaller images keep their size.
    pub longest_side: u32,
}

impl Default for ThumbnailLimits {
    fn default() -> Self {
        ThumbnailLimits { max_width: 16_384, max_height: 16_384, max_alloc: 256 * 1024 * 1024, longest_side: 256 }
    }
}

/// An encoded thumbnail.
#[derive(Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/webp`.
    pub content_type: &'static str,
    /// Size of the thumbnail, upright (after the EXIF orientation was applied).
    pub width: u32,
    pub height: u32,
    /// Size of the source as stored in the file, before orientation.
    pub source_width: u32,
    pub source_height: u32,
}

/// Shows the size of `bytes`, not kilobytes of numbers in a log line or a failed assertion.
impl std::fmt::Debug for Thumbnail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thumbnail")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("content_type", &self.content_type)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("source_width", &self.source_width)
            .field("source_height", &self.source_height)
            .finish()
    }
}

/// Why no thumbnail could be made. Every message is one sentence meant for a person.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// The content is not in a format with a decoder here, whatever the file is called.
    #[error("The file is not an image in a format thumbnails can be made of (JPEG, PNG, GIF, WebP or BMP).")]
    NotAnImage,
    /// The dimensions, or the memory decoding would take, are beyond the limits.
    #[error("{}", too_large_sentence(.dimensions, .exceeded))]
    TooLarge {
        /// Width and height as the file declares them; `None` only when the decoder refused
        /// while still reading headers (for example a PNG metadata chunk beyond `max_alloc`).
        dimensions: Option<(u32, u32)>,
        exceeded: Exceeded,
    },
    /// A valid image using a feature the decoder lacks (for example arithmetic-coded JPEG).
    #[error("The image uses a feature the decoder does not support: {}.", one_line(.0))]
    Unsupported(String),
    /// The data is damaged or ends early.
    #[error("The image data is damaged or incomplete: {}.", one_line(.0))]
    Corrupt(String),
    /// A decoder or encoder panicked; the panic was caught.
    #[error("The image decoder crashed on this file and was stopped: {}.", one_line(.0))]
    Panicked(String),
    /// Encoding the (already small) thumbnail failed.
    #[error("The thumbnail could not be encoded: {}.", one_line(.0))]
    Encode(String),
    /// Reading the input failed; the file itself may be fine.
    #[error("The image file could not be read: {}.", one_line(&.0.to_string()))]
    Io(#[source] io::Error),
}

/// Which limit a [`ThumbnailError::TooLarge`] image is beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Dimensions {
        max_width: u32,
        max_height: u32,
    },
    /// `needed` is `None` when the decoder refused before the total could be known.
    Memory {
        needed: Option<u64>,
        max_alloc: u64,
    },
}

impl ThumbnailError {
    /// Whether trying the same file again is pointless. Only an I/O error while reading may go
    /// away; every other outcome is decided by the bytes alone.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, ThumbnailError::Io(_))
    }
}

/// Makes a thumbnail of the image `input` holds, starting at its current position.
///
/// Synchronous and CPU-bound (about 0.4 s for a 24-megapixel JPEG in release builds): run it with
/// `spawn_blocking`. Memory stays within about `limits.max_alloc` plus the thumbnail.
pub fn thumbnail<R: BufRead + Seek>(mut input: R, limits: &ThumbnailLimits) -> Result<Thumbnail, ThumbnailError> {
    guarded(|| make_thumbnail(&mut input, limits))
}

/// Runs `work`, turning a panic into [`ThumbnailError::Panicked`]. Decoders for hostile input
/// have panicked before (slice indexing, `assert!`s in image's GIF path); one bad upload must not
/// take a worker thread down with it. Nothing the closure touched is used after a panic, which is
/// what makes `AssertUnwindSafe` sound here.
fn guarded<T>(work: impl FnOnce() -> Result<T, ThumbnailError>) -> Result<T, ThumbnailError> {
    panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|payload| Err(ThumbnailError::Panicked(panic_message(payload.as_ref()))))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn make_thumbnail<R: BufRead + Seek>(input: &mut R, limits: &ThumbnailLimits) -> Result<Thumbnail, ThumbnailError> {
    let start = input.stream_position().map_err(ThumbnailError::Io)?;
    let format = ImageReader::new(&mut *input).with_guessed_format().map_err(ThumbnailError::Io)?.format();
    let Some(format) = format else { return Err(ThumbnailError::NotAnImage) };

    if format == ImageFormat::Jpeg {
        // zune-jpeg turns a truncated file into grey rows without an error, so completeness is
        // proven first (see jpeg.rs); the walk also yields the byte span the decoder will buffer.
        let layout = jpeg::inspect(&mut *input).map_err(|err| match err {
            jpeg::InspectError::Truncated => {
                ThumbnailError::Corrupt("the JPEG data ends before its end-of-image marker (truncated file)".into())
            }
            jpeg::InspectError::Malformed(why) => {
                ThumbnailError::Corrupt(format!("the JPEG structure is broken: {why}"))
            }
            jpeg::InspectError::Io(err) => ThumbnailError::Io(err),
        })?;
        // The decoder copies its whole input into a Vec, and buffers every DCT coefficient for
        // progressive files, before the pixels: both count against max_alloc.
        let overhead = layout.length.saturating_add(layout.coefficient_bytes());
        let window = jpeg::Window::new(&mut *input, start, layout.length).map_err(ThumbnailError::Io)?;
        let reader = ImageReader::with_format(window, format);
        shrink(reader, overhead, limits, || layout.dimensions())
    } else {
        let reader = ImageReader::with_format(&mut *input, format);
        let result = shrink(reader, 0, limits, || None);
        // A decoder that refuses in its header does not say what it read; parse the header
        // once more, without the dimension limits, to name the size in the error.
        match result {
            Err(ThumbnailError::TooLarge { dimensions: None, exceeded }) => {
                Err(ThumbnailError::TooLarge { dimensions: probe_dimensions(input, start, format, limits), exceeded })
            }
            other => other,
        }
    }
}

fn image_limits(limits: &ThumbnailLimits) -> image::Limits {
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_width);
    image_limits.max_image_height = Some(limits.max_height);
    image_limits.max_alloc = Some(limits.max_alloc);
    image_limits
}

fn probe_dimensions<R: BufRead + Seek>(
    input: &mut R,
    start: u64,
    format: ImageFormat,
    limits: &ThumbnailLimits,
) -> Option<(u32, u32)> {
    input.seek(io::SeekFrom::Start(start)).ok()?;
    let mut reader = ImageReader::with_format(input, format);
    let mut header_limits = image_limits(limits);
    header_limits.max_image_width = None;
    header_limits.max_image_height = None;
    reader.limits(header_limits);
    reader.into_decoder().ok().map(|decoder| decoder.dimensions())
}

/// Decodes under the limits, shrinks, orients and encodes. `overhead` is what the decoder
/// allocates besides the output pixels, as far as the caller knows it; `header_dimensions` names
/// the size when the decoder refuses before reporting it.
fn shrink<R: BufRead + Seek>(
    mut reader: ImageReader<R>,
    overhead: u64,
    limits: &ThumbnailLimits,
    header_dimensions: impl FnOnce() -> Option<(u32, u32)>,
) -> Result<Thumbnail, ThumbnailError> {
    // Limits go on the reader before anything is decoded: the PNG decoder only takes them at
    // construction, the others check dimensions as soon as their header is read.
    reader.limits(image_limits(limits));
    let format = reader.format();
    let mut decoder = reader.into_decoder().map_err(|err| from_image_error(err, header_dimensions(), limits))?;

    let (width, height) = decoder.dimensions();
    let dimensions = Some((width, height));
    if width > limits.max_width || height > limits.max_height {
        let exceeded = Exceeded::Dimensions { max_width: limits.max_width, max_height: limits.max_height };
        return Err(ThumbnailError::TooLarge { dimensions, exceeded });
    }
    if width == 0 || height == 0 {
        return Err(ThumbnailError::Corrupt(format!("the header declares a {width}x{height} image")));
    }
    // `DynamicImage::from_decoder` allocates `total_bytes()` without consulting max_alloc
    // (image-rs issue #3081), so the budget is enforced here, before that call.
    let needed = decoder.total_bytes().saturating_add(overhead).saturating_add(scratch_bytes(format, width, height));
    if needed > limits.max_alloc {
        let exceeded = Exceeded::Memory { needed: Some(needed), max_alloc: limits.max_alloc };
        return Err(ThumbnailError::TooLarge { dimensions, exceeded });
    }
    // Unreadable EXIF must not cost the thumbnail: it is then shown as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(|err| from_image_error(err, dimensions, limits))?;

    // Shrinking before orienting is the same picture, and the rotation then copies a few
    // kilobytes instead of a second full-size buffer. `thumbnail` averages every source pixel
    // into exactly one target pixel: a box filter, good for large reductions and the fastest
    // path on a 24-megapixel photo (see the measurement test below).
    let side = limits.longest_side.max(1);
    let mut small = if width > side || height > side { image.thumbnail(side, side) } else { image };
    small.apply_orientation(orientation);

    let (thumb_width, thumb_height) = (small.width(), small.height());
    let (bytes, content_type) = encode(small)?;
    Ok(Thumbnail {
        bytes,
        content_type,
        width: thumb_width,
        height: thumb_height,
        source_width: width,
        source_height: height,
    })
}

/// Scratch memory a decoder needs beyond its output, for the formats where it is large.
fn scratch_bytes(format: Option<ImageFormat>, width: u32, height: u32) -> u64 {
    match format {
        // image-webp decodes lossless images without alpha through an RGBA buffer, and lossy
        // ones through YUV planes: at most four bytes per pixel.
        Some(ImageFormat::WebP) => 4 * u64::from(width) * u64::from(height),
        _ => 0,
    }
}

/// JPEG unless a pixel is not fully opaque: many RGBA files (screenshots, GIFs) are opaque, and a
/// lossless WebP of a photo is several times larger than the JPEG.
fn encode(image: DynamicImage) -> Result<(Vec<u8>, &'static str), ThumbnailError> {
    let (width, height) = (image.width(), image.height());
    let mut bytes = Vec::new();
    let encoded = if image.color().has_alpha() {
        let rgba = image.into_rgba8();
        if rgba.pixels().any(|pixel| pixel.0[3] != u8::MAX) {
            let encoded =
                WebPEncoder::new_lossless(&mut bytes).encode(rgba.as_raw(), width, height, ExtendedColorType::Rgba8);
            return encoded.map(|()| (bytes, "image/webp")).map_err(|err| ThumbnailError::Encode(err.to_string()));
        }
        let rgb = DynamicImage::ImageRgba8(rgba).into_rgb8();
        JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).encode(
            rgb.as_raw(),
            width,
            height,
            ExtendedColorType::Rgb8,
        )
    } else {
        let rgb = image.into_rgb8();
        JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).encode(
            rgb.as_raw(),
            width,
            height,
            ExtendedColorType::Rgb8,
        )
    };
    encoded.map(|()| (bytes, "image/jpeg")).map_err(|err| ThumbnailError::Encode(err.to_string()))
}

fn from_image_error(err: ImageError, dimensions: Option<(u32, u32)>, limits: &ThumbnailLimits) -> ThumbnailError {
    match err {
        ImageError::Limits(limit) => {
            let exceeded = match limit.kind() {
                LimitErrorKind::DimensionError => {
                    Exceeded::Dimensions { max_width: limits.max_width, max_height: limits.max_height }
                }
                _ => Exceeded::Memory { needed: None, max_alloc: limits.max_alloc },
            };
            ThumbnailError::TooLarge { dimensions, exceeded }
        }
        ImageError::Unsupported(unsupported) => match unsupported.kind() {
            UnsupportedErrorKind::Format(_) => ThumbnailError::NotAnImage,
            _ => ThumbnailError::Unsupported(unsupported.to_string()),
        },
        // Decoders report data that ends early, or bytes that make no sense, as I/O errors.
        ImageError::IoError(err) if matches!(err.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData) => {
            ThumbnailError::Corrupt(format!("the data ends early or is invalid ({err})"))
        }
        ImageError::IoError(err) => ThumbnailError::Io(err),
        ImageError::Decoding(err) => ThumbnailError::Corrupt(err.to_string()),
        ImageError::Parameter(err) => ThumbnailError::Corrupt(err.to_string()),
        ImageError::Encoding(err) => ThumbnailError::Encode(err.to_string()),
    }
}

/// Decoder messages sometimes span lines or end with a full stop; the sentence adds its own.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.trim_end_matches('.').to_owned()
}

fn too_large_sentence(dimensions: &Option<(u32, u32)>, exceeded: &Exceeded) -> String {
    let image = match dimensions {
        Some((width, height)) => format!("The {width}x{height} pixel image"),
        None => "The image".to_owned(),
    };
    match *exceeded {
        Exceeded::Dimensions { max_width, max_height } => {
            format!("{image} is beyond the {max_width}x{max_height} pixel limit for thumbnails, so it was not decoded.")
        }
        Exceeded::Memory { needed: Some(needed), max_alloc } => format!(
            "{image} would need {} to decode, beyond the {} memory limit for thumbnails, so it was not decoded.",
            human_bytes(needed),
            human_bytes(max_alloc)
        ),
        Exceeded::Memory { needed: None, max_alloc } => format!(
            "{image} would need more than the {} memory limit for thumbnails to decode, so it was not decoded.",
            human_bytes(max_alloc)
        ),
    }
}

fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB { format!("{} MiB", bytes.div_ceil(MIB)) } else { format!("{} KiB", bytes.div_ceil(1024)) }
}

#[cfg(test)]
mod tests;
