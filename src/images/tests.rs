//! Tests of thumbnail making. Every fixture is generated here, in code (no binary files): images
//! are drawn and encoded with `image`'s own encoders, then EXIF is spliced in, headers patched or
//! data cut short by hand. The one measurement test is `#[ignore]`d; run it in release mode.

use super::*;
use image::codecs::gif::GifEncoder;
use image::codecs::png::PngEncoder;
use image::{Frame, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};
use std::io::{Cursor, Read, SeekFrom};
use std::time::{Duration, Instant};

const RED: Rgb<u8> = Rgb([220, 20, 20]);
const BLUE: Rgb<u8> = Rgb([20, 20, 220]);

fn make(bytes: &[u8]) -> Result<Thumbnail, ThumbnailError> {
    thumbnail(Cursor::new(bytes), &ThumbnailLimits::default())
}

fn jpeg_of(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode(image.as_raw(), image.width(), image.height(), ExtendedColorType::Rgb8)
        .unwrap();
    bytes
}

fn png_of(image: &DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(image.as_bytes(), image.width(), image.height(), image.color().into())
        .unwrap();
    bytes
}

/// Inserts an APP1 segment right after SOI holding a big-endian TIFF header and one IFD entry:
/// Orientation (0x0112), type SHORT, count 1, the value in the first two bytes of the value field.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0MM\0\x2A\0\0\0\x08".to_vec();
    exif.extend_from_slice(&1u16.to_be_bytes());
    exif.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&(exif.len() as u16 + 2).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Deterministic noise (xorshift), so JPEGs are large and every byte of them matters.
fn noisy(width: u32, height: u32) -> RgbImage {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state & 0x3F) as u8;
        Rgb([(x % 256) as u8 / 2 + n, (y % 256) as u8 / 2 + n, 96 + n])
    })
}

fn halves(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| if x < width / 2 { RED } else { BLUE })
}

fn decoded(thumb: &Thumbnail) -> RgbaImage {
    image::load_from_memory(&thumb.bytes).unwrap().into_rgba8()
}

/// Mean colour of the rectangle [x0, x1) x [y0, y1).
fn mean(image: &RgbaImage, (x0, y0): (u32, u32), (x1, y1): (u32, u32)) -> [f64; 3] {
    let mut sum = [0f64; 3];
    for y in y0..y1 {
        for x in x0..x1 {
            let pixel = image.get_pixel(x, y).0;
            (0..3).for_each(|c| sum[c] += f64::from(pixel[c]));
        }
    }
    let count = f64::from((x1 - x0) * (y1 - y0));
    sum.map(|s| s / count)
}

fn assert_close(actual: [f64; 3], expected: Rgb<u8>, what: &str) {
    let distance = (0..3).map(|c| (actual[c] - f64::from(expected.0[c])).abs()).fold(0f64, f64::max);
    assert!(distance < 25.0, "{what}: mean {actual:?} is not close to {expected:?}");
}

#[test]
fn exif_orientation_6_turns_a_landscape_photo_into_an_upright_portrait_thumbnail() {
    let jpeg = with_exif_orientation(&jpeg_of(&halves(400, 200), 90), 6);
    let thumb = make(&jpeg).unwrap();

    assert_eq!(thumb.content_type, "image/jpeg");
    assert_eq!((thumb.width, thumb.height), (128, 256));
    assert_eq!((thumb.source_width, thumb.source_height), (400, 200));
    let image = decoded(&thumb);
    assert_eq!(image.dimensions(), (128, 256));
    // Rotating 90 degrees clockwise brings the left (red) half to the top.
    assert_close(mean(&image, (8, 8), (120, 112)), RED, "top");
    assert_close(mean(&image, (8, 144), (120, 248)), BLUE, "bottom");
}

#[test]
fn a_photo_with_orientation_1_or_without_exif_stays_landscape() {
    let plain = jpeg_of(&halves(400, 200), 90);
    for jpeg in [with_exif_orientation(&plain, 1), plain] {
        let thumb = make(&jpeg).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 128));
        let image = decoded(&thumb);
        assert_close(mean(&image, (8, 8), (112, 120)), RED, "left");
        assert_close(mean(&image, (144, 8), (248, 120)), BLUE, "right");
    }
}

/// A real PNG whose IHDR is rewritten to claim other dimensions, with a correct CRC.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_of(&DynamicImage::ImageRgb8(halves(4, 4)));
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    png
}

#[test]
fn a_png_claiming_100000_by_100000_pixels_is_refused_from_its_header() {
    let started = Instant::now();
    let err = make(&png_claiming(100_000, 100_000)).unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    match &err {
        ThumbnailError::TooLarge { dimensions, exceeded: Exceeded::Dimensions { .. } } => {
            assert_eq!(*dimensions, Some((100_000, 100_000)));
        }
        other => panic!("expected TooLarge by dimensions, got {other:?}"),
    }
    assert!(err.is_permanent());
    assert_eq!(
        err.to_string(),
        "The 100000x100000 pixel image is beyond the 16384x16384 pixel limit for thumbnails, so it was not decoded."
    );
}

#[test]
fn an_image_within_the_dimension_limits_but_over_the_memory_limit_is_refused() {
    let limits = ThumbnailLimits { max_alloc: 100_000, ..ThumbnailLimits::default() };
    let png = png_of(&DynamicImage::ImageRgb8(noisy(400, 300)));
    let err = thumbnail(Cursor::new(&png), &limits).unwrap_err();
    match &err {
        ThumbnailError::TooLarge { dimensions, exceeded: Exceeded::Memory { needed, .. } } => {
            assert_eq!(*dimensions, Some((400, 300)));
            assert_eq!(*needed, Some(400 * 300 * 3));
        }
        other => panic!("expected TooLarge by memory, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "The 400x300 pixel image would need 352 KiB to decode, beyond the 98 KiB memory limit for thumbnails, \
         so it was not decoded."
    );
}

#[test]
fn a_jpeg_is_charged_for_its_buffered_input_as_well_as_its_pixels() {
    let jpeg = jpeg_of(&noisy(400, 300), 90);
    let pixels = 400 * 300 * 3;
    let limits = ThumbnailLimits { max_alloc: pixels + jpeg.len() as u64 - 1, ..ThumbnailLimits::default() };
    let err = thumbnail(Cursor::new(&jpeg), &limits).unwrap_err();
    assert!(matches!(err, ThumbnailError::TooLarge { exceeded: Exceeded::Memory { .. }, .. }), "{err:?}");

    let limits = ThumbnailLimits { max_alloc: pixels + jpeg.len() as u64, ..limits };
    thumbnail(Cursor::new(&jpeg), &limits).unwrap();
}

#[test]
fn the_jpeg_decoder_by_itself_turns_a_truncated_file_into_grey_rows_which_is_why_the_end_marker_is_checked() {
    // Pins the upstream behaviour the JPEG pre-flight exists for. If this starts failing, the
    // decoder has learnt to report truncation and the pre-flight could become a plain check.
    let jpeg = jpeg_of(&noisy(400, 300), 90);
    let cut = &jpeg[..jpeg.len() / 2];
    let image = image::load_from_memory_with_format(cut, ImageFormat::Jpeg).unwrap().into_rgb8();
    let bottom = mean(&DynamicImage::ImageRgb8(image).into_rgba8(), (0, 280), (400, 300));
    assert!(bottom.iter().all(|c| (c - 128.0).abs() < 2.0), "bottom rows are {bottom:?}");
}

#[test]
fn a_jpeg_cut_at_half_its_length_is_corrupt_not_a_half_grey_thumbnail() {
    let jpeg = jpeg_of(&noisy(400, 300), 90);
    let err = make(&jpeg[..jpeg.len() / 2]).unwrap_err();
    assert!(matches!(err, ThumbnailError::Corrupt(_)), "{err:?}");
    assert!(err.is_permanent());
    assert_eq!(
        err.to_string(),
        "The image data is damaged or incomplete: the JPEG data ends before its end-of-image marker (truncated file)."
    );
}

#[test]
fn a_jpeg_missing_only_its_end_marker_is_corrupt() {
    let jpeg = jpeg_of(&noisy(64, 64), 90);
    let err = make(&jpeg[..jpeg.len() - 2]).unwrap_err();
    assert!(matches!(err, ThumbnailError::Corrupt(_)), "{err:?}");
}

#[test]
fn a_jpeg_followed_by_other_data_like_a_motion_photo_still_gets_a_thumbnail() {
    let mut jpeg = jpeg_of(&halves(400, 200), 90);
    jpeg.extend_from_slice(b"\0\0\0\x18ftypmp42 and then a few seconds of video");
    let thumb = make(&jpeg).unwrap();
    assert_eq!((thumb.width, thumb.height), (256, 128));
}

#[test]
fn truncated_png_gif_and_webp_files_are_errors() {
    let noise = DynamicImage::ImageRgb8(noisy(200, 150));
    let png = png_of(&noise);

    let mut gif = Vec::new();
    GifEncoder::new(&mut gif).encode_frames([Frame::new(noisy_rgba(64, 48))]).unwrap();

    let rgba = noisy_rgba(200, 150);
    let mut webp = Vec::new();
    WebPEncoder::new_lossless(&mut webp).encode(rgba.as_raw(), 200, 150, ExtendedColorType::Rgba8).unwrap();

    for (name, data) in [("png", png), ("gif", gif), ("webp", webp)] {
        make(&data).unwrap_or_else(|err| panic!("the whole {name} failed: {err}"));
        // Only cuts into pixel data matter: these decoders do accept a file missing just its
        // trailer (PNG's IEND checksum, GIF's last bytes, WebP's padding byte), and then the
        // pixels are all there.
        for cut in [data.len() / 2, data.len() * 3 / 4] {
            let result = make(&data[..cut]);
            assert!(matches!(result, Err(ThumbnailError::Corrupt(_))), "{name} cut at {cut}: {result:?}");
        }
    }
}

fn noisy_rgba(width: u32, height: u32) -> RgbaImage {
    let rgb = noisy(width, height);
    RgbaImage::from_fn(width, height, |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        Rgba([r, g, b, if x < width / 2 { 255 } else { 0 }])
    })
}

#[test]
fn text_in_a_file_named_like_a_photo_is_not_an_image() {
    let err = make(b"Dear all, the photo.jpg you asked for is attached.\n").unwrap_err();
    assert!(matches!(err, ThumbnailError::NotAnImage), "{err:?}");
    assert!(err.is_permanent());
}

#[test]
fn an_empty_file_is_not_an_image() {
    assert!(matches!(make(b""), Err(ThumbnailError::NotAnImage)));
}

#[test]
fn a_transparent_png_becomes_a_lossless_webp_and_a_small_one_is_not_enlarged() {
    let image = RgbaImage::from_fn(100, 50, |x, _| if x < 50 { Rgba([200, 30, 30, 255]) } else { Rgba([0, 0, 0, 0]) });
    let thumb = make(&png_of(&DynamicImage::ImageRgba8(image.clone()))).unwrap();

    assert_eq!(thumb.content_type, "image/webp");
    assert_eq!((thumb.width, thumb.height), (100, 50));
    assert_eq!((thumb.source_width, thumb.source_height), (100, 50));
    let back = image::load_from_memory_with_format(&thumb.bytes, ImageFormat::WebP).unwrap().into_rgba8();
    assert_eq!(back, image, "lossless round trip, alpha included");
}

#[test]
fn an_rgba_image_without_any_transparent_pixel_becomes_a_jpeg() {
    let image = RgbaImage::from_pixel(300, 300, Rgba([10, 120, 10, 255]));
    let thumb = make(&png_of(&DynamicImage::ImageRgba8(image))).unwrap();
    assert_eq!(thumb.content_type, "image/jpeg");
    assert_eq!((thumb.width, thumb.height), (256, 256));
}

#[test]
fn a_gif_thumbnail_shows_its_first_frame() {
    let red = RgbaImage::from_pixel(300, 150, Rgba([220, 20, 20, 255]));
    let blue = RgbaImage::from_pixel(300, 150, Rgba([20, 20, 220, 255]));
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif).encode_frames([Frame::new(red), Frame::new(blue)]).unwrap();

    let thumb = make(&gif).unwrap();
    assert_eq!((thumb.width, thumb.height), (256, 128));
    assert_eq!(thumb.content_type, "image/jpeg", "an opaque GIF needs no alpha channel");
    assert_close(mean(&decoded(&thumb), (0, 0), (256, 128)), RED, "first frame");
}

#[test]
fn a_panic_inside_the_work_is_caught_and_reported() {
    let result: Result<(), _> = guarded(|| panic!("index out of bounds in a decoder"));
    let err = result.unwrap_err();
    assert!(matches!(&err, ThumbnailError::Panicked(message) if message == "index out of bounds in a decoder"));
    assert!(err.is_permanent());
    assert_eq!(
        err.to_string(),
        "The image decoder crashed on this file and was stopped: index out of bounds in a decoder."
    );
}

/// Serves bytes until `fail_at`, then reports a device error, as a failing disk would.
struct FailingReader {
    inner: Cursor<Vec<u8>>,
    fail_at: u64,
}

impl Read for FailingReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(out.len());
        out[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl BufRead for FailingReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let position = self.inner.position();
        if position >= self.fail_at {
            return Err(io::Error::other("input/output error"));
        }
        let end = (self.fail_at as usize).min(self.inner.get_ref().len());
        Ok(&self.inner.get_ref()[position as usize..end])
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
    }
}

impl Seek for FailingReader {
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        self.inner.seek(target)
    }
}

#[test]
fn an_error_reading_the_file_is_the_only_one_worth_retrying() {
    let jpeg = jpeg_of(&noisy(400, 300), 90);
    let reader = FailingReader { inner: Cursor::new(jpeg), fail_at: 1000 };
    let err = thumbnail(reader, &ThumbnailLimits::default()).unwrap_err();
    assert!(matches!(err, ThumbnailError::Io(_)), "{err:?}");
    assert!(!err.is_permanent());
    assert_eq!(err.to_string(), "The image file could not be read: input/output error.");
}

#[test]
fn the_thumbnail_starts_where_the_reader_stands() {
    let mut data = b"prefix that is not part of the image".to_vec();
    let start = data.len() as u64;
    data.extend_from_slice(&jpeg_of(&halves(400, 200), 90));
    let mut reader = Cursor::new(data);
    reader.set_position(start);
    let thumb = thumbnail(reader, &ThumbnailLimits::default()).unwrap();
    assert_eq!((thumb.width, thumb.height), (256, 128));
}

/// Set by the measurement test for the child process it starts.
const MEASURE_FILE: &str = "FERRY_THUMBNAIL_MEASURE_FILE";

/// Peak and current resident memory in KiB, from /proc (Linux only).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[test]
#[ignore = "a measurement: run with `cargo test --release --lib images -- --ignored --nocapture`"]
fn measure_a_24_megapixel_jpeg_thumbnail() {
    // The 6000x4000 fixture takes ~100 MB to draw and encode, which would hide the peak being
    // measured, so the thumbnail is made in a fresh process (this test binary, running the test
    // below) that only reads the file.
    let photo = RgbImage::from_fn(6000, 4000, |x, y| {
        let n = ((x.wrapping_mul(7919) ^ y.wrapping_mul(104_729)) >> 3) as u8 & 0x0F;
        Rgb([(x / 24) as u8 + n, (y / 16) as u8 + n, ((x + y) / 40) as u8 + n])
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), jpeg_of(&photo, 90)).unwrap();
    drop(photo);

    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "images::tests::measure_child_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env(MEASURE_FILE, file.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!(
        "{}",
        stdout.lines().filter_map(|l| l.find("measured:").map(|at| &l[at..])).collect::<Vec<_>>().join("\n")
    );
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
#[ignore = "started by measure_a_24_megapixel_jpeg_thumbnail"]
fn measure_child_process() {
    let Some(path) = std::env::var_os(MEASURE_FILE) else { return };
    let size = std::fs::metadata(&path).unwrap().len();
    let (_, before) = memory_kib();
    let started = Instant::now();
    let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let thumb = thumbnail(file, &ThumbnailLimits::default()).unwrap();
    let elapsed = started.elapsed();
    let (peak, _) = memory_kib();
    println!(
        "measured: {}x{} JPEG of {} KiB -> {}x{} {} of {} bytes in {elapsed:.2?}, peak RSS {} MiB ({} MiB above the \
         {} MiB before)",
        thumb.source_width,
        thumb.source_height,
        size / 1024,
        thumb.width,
        thumb.height,
        thumb.content_type,
        thumb.bytes.len(),
        peak / 1024,
        peak.saturating_sub(before) / 1024,
        before / 1024
    );

    // The resize step alone, for the choice of filter: decode once more, then time each.
    let image = ImageReader::open(&path).unwrap().with_guessed_format().unwrap().decode().unwrap();
    for (name, filter) in
        [("Triangle", image::imageops::FilterType::Triangle), ("CatmullRom", image::imageops::FilterType::CatmullRom)]
    {
        let started = Instant::now();
        let small = image.resize(256, 256, filter);
        println!("measured: resize with {name} to {}x{} in {:.2?}", small.width(), small.height(), started.elapsed());
    }
    let started = Instant::now();
    let small = image.thumbnail(256, 256);
    println!("measured: thumbnail (box) to {}x{} in {:.2?}", small.width(), small.height(), started.elapsed());
}
